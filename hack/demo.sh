#!/usr/bin/env bash
# make demo: the plugin's main job against the local IBM Cloud emulator.
# Starts the emulator on loopback and runs the built plugin as the kubelet
# would: a CredentialProviderRequest on stdin, the response on stdout. Every
# command is printed as it runs ("$ ..."): copied with the export line, it
# runs the same. Everything it writes is in a temporary work directory,
# removed at the end, also when interrupted.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=bin/icr-credential-provider
profile=Profile-5f0c8a2e-9d3b-4c71-8e6f-1a2b3c4d5e6f # the emulator's default trusted profile
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

# Bold headings on a terminal only: no escape codes in a log file.
if [ -t 1 ]; then bold=$'\033[1m' plain=$'\033[0m'; else bold='' plain=''; fi

# start_emulator NAME VAR [emulator flags...]: starts an emulator and sets
# VAR to its URL. (Not in a command substitution: its subshell would lose
# the PID, and the emulator would outlive the demo.)
start_emulator() {
  local name=$1 var=$2; shift 2
  bin/icr-emulator --listen 127.0.0.1:0 --url-file "$work/$name.url" "$@" >"$work/$name.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 200); do [ -s "$work/$name.url" ] && break; sleep 0.05; done
  [ -s "$work/$name.url" ] || { echo "demo: the emulator did not start: $(tail -n 1 "$work/$name.log")" >&2; exit 1; }
  local u; u=$(sed -n 's/^ICR_EMULATOR_URL=//p' "$work/$name.url")
  printf -v "$var" '%s' "$u"
}

# abbreviate: the response on one host per line, tokens shortened (they are
# the emulator's, but a demo should not teach copying tokens around).
abbreviate() { sed -E -e 's/"password":"([^"]{16})[^"]*"/"password":"\1…"/g' -e 's/\},"/},\n  "/g' -e 's/"auth":\{/"auth":{\n  /'; echo; }

step() { printf '\n%s== %s%s\n' "$bold" "$*" "$plain"; }
show() { printf '$ %s\n' "$*"; }

start_emulator main url
step "IBM Cloud emulator (IAM, VPC metadata, registry) listening at $url"
export ICR_IAM_URL=$url ICR_METADATA_URL=$url ICR_CACHE_DIR=$work/cache
show "export ICR_IAM_URL=$url ICR_METADATA_URL=$url ICR_CACHE_DIR=$work/cache"

step "1. The kubelet asks for us.icr.io/team/app; the node identity is VPC metadata + a trusted profile"
show "$bin --profile-id $profile < examples/requests/v1.json"
"$bin" --profile-id "$profile" < examples/requests/v1.json | abbreviate

step "2. A new process for another image: served from the on-disk cache (no IAM call)"
show "$bin --profile-id $profile -v=4 < examples/requests/v1beta1.json   # answers in v1beta1"
"$bin" --profile-id "$profile" -v=4 < examples/requests/v1beta1.json >"$work/out.json" 2>"$work/err.log"
grep -o '"Using the cached token" *[a-z]*="[a-z]*"' "$work/err.log" || cat "$work/err.log"
head -c 160 "$work/out.json"; echo " …"
if command -v curl >/dev/null; then echo "emulator counters: $(curl -fsS "$url/_emulator/stats")"; fi

step "3. An image that is not ours (cp.icr.io takes entitlement keys): an empty answer, no token"
show "$bin < examples/requests/not-served.json"
"$bin" < examples/requests/not-served.json
echo

step "4. Metadata service disabled (it accepts connections and never answers): a clear error, fast"
start_emulator hung hung --fault metadata-token=hang
show "$bin --metadata-url $hung --cache-dir none < examples/requests/v1.json"
set +e
start=$(date +%s%N)
"$bin" --metadata-url "$hung" --cache-dir none < examples/requests/v1.json
code=$?
set -e
echo "exit code $code after $(( ($(date +%s%N) - start) / 1000000 )) ms"

step "5. A wrong API key: IAM's own error code, and what to do"
printf 'Kx9wTq4mZ7pR2vN8cL5bH3jF6dS1gY0aE-wrongKey\n' > "$work/apikey"; chmod 600 "$work/apikey"
show "$bin --api-key-file $work/apikey --cache-dir none < examples/requests/v1.json"
set +e
"$bin" --api-key-file "$work/apikey" --cache-dir none < examples/requests/v1.json
echo "exit code $?"
set -e
