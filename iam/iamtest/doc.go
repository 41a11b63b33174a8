// Package iamtest is a local emulator of the IBM Cloud services the
// credential provider talks to, modelled on net/http/httptest: NewServer
// returns a running loopback HTTP server, Close stops it.
//
// One server and one base URL serve three services whose paths do not
// collide:
//
//   - IAM: POST /identity/token with grant types
//     urn:ibm:params:oauth:grant-type:apikey and
//     urn:ibm:params:oauth:grant-type:cr-token (a Kubernetes
//     service-account token exchanged for a trusted profile's token).
//   - VPC instance metadata / VPC identity:
//     PUT /instance_identity/v1/token and POST /instance_identity/v1/iam_token
//     (version dates before 2025-08-26), PUT /identity/v1/token and
//     POST /identity/v1/iam_tokens.
//   - A minimal IBM Cloud Container Registry: GET /v2/, the token service
//     at /oauth/token (username iambearer, password an IAM access token
//     minted by this server) and HEAD/GET /v2/<name>/manifests/<ref>;
//     with WithImageLayers also the blobs of runnable images, which a
//     container runtime can pull and start, and with WithTLS over TLS on a
//     second listener (reached under any host name, e.g. us.icr.io in a
//     test's own network namespace). Server.RegistryTokens records who got
//     each registry token.
//
// The answers follow the real wire formats as far as they are documented
// (see the comments at each handler for what was verified against IBM's
// documentation and github.com/IBM/go-sdk-core/v5, and what is a plausible
// guess). Tokens are JWT-shaped (header.payload.signature, base64url) and
// signed with a per-server HMAC key, so the server can tell its own tokens
// from forgeries without keeping state; clients never verify them.
//
// Faults (HTTP errors, hangs, connection resets, malformed or truncated
// bodies, tokens without expiry, IAM error codes, ...) can be switched per
// endpoint at run time with Server.SetFault, also from shell scripts through
// the control endpoints under /_emulator/ (see Server.ServeHTTP).
//
// The emulator never logs a secret: API keys, service-account tokens and
// access tokens are redacted in request snapshots, in the request log and in
// the control endpoints' answers.
package iamtest
