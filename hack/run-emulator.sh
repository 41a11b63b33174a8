#!/usr/bin/env bash
# make run-emulator: the local IBM Cloud emulator (IAM, VPC metadata,
# registry) in the foreground, with the exact commands to run the plugin by
# hand against it printed first. Ctrl-C stops it and removes what it wrote
# (all of it under _output/emulator).
#
#   make run-emulator                     a free port
#   make run-emulator EMULATOR_PORT=8091  a fixed one
set -euo pipefail
cd "$(dirname "$0")/.."

port=${EMULATOR_PORT:-0}
work=$PWD/_output/emulator
bin=$PWD/bin/icr-credential-provider
emulator=$PWD/bin/icr-emulator
profile=Profile-5f0c8a2e-9d3b-4c71-8e6f-1a2b3c4d5e6f # the emulator's default trusted profile
apikey=iamtest-DefaultApiKey-0123456789abcdefghijkl   # an API key it accepts

if [ -e "$work/pid" ] && kill -0 "$(cat "$work/pid")" 2>/dev/null; then
  echo "run-emulator: an emulator from an earlier 'make run-emulator' still runs (pid $(cat "$work/pid")): stop it with Ctrl-C in its shell, or 'kill $(cat "$work/pid")'" >&2
  exit 1
fi
rm -rf "$work" && mkdir -p "$work/cache" && chmod 700 "$work" "$work/cache"
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$emulator" --listen "127.0.0.1:$port" --url-file "$work/url" --sa-token-file "$work/sa-token" >/dev/null 2>"$work/emulator.log" &
pid=$!
echo "$pid" >"$work/pid"
for _ in $(seq 100); do [ -s "$work/url" ] && break; kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
if [ ! -s "$work/url" ]; then
  echo "run-emulator: the emulator did not start: $(tail -n 1 "$work/emulator.log")" >&2
  exit 1
fi
url=$(sed -n 's/^ICR_EMULATOR_URL=//p' "$work/url")
printf '%s\n' "$apikey" >"$work/apikey" && chmod 600 "$work/apikey"

cat <<EOT
IBM Cloud emulator (IAM, VPC metadata and registry) at $url. Ctrl-C stops it.
In another shell, from $(pwd):

  export ICR_IAM_URL=$url ICR_METADATA_URL=$url ICR_CACHE_DIR=$work/cache

  # the node identity: VPC instance metadata + a trusted profile
  $bin --profile-id $profile < examples/requests/v1.json

  # an API key (this one is the emulator's)
  $bin --api-key-file $work/apikey --cache-dir none < examples/requests/v1.json

  # a pod's service account: a token the emulator minted for default/team-a,
  # whose annotation names the trusted profile team-a-pull
  sed "s|REPLACE-WITH-A-SERVICE-ACCOUNT-TOKEN-FOR-AUDIENCE-iam|\$(cat $work/sa-token)|" examples/requests/service-account.json \\
    | $bin --profile-id $profile

  # what is wrong, if anything (offline, the check of icr.io's registry
  # fails: there is no network; on a node it checks the real one)
  $bin doctor --profile-id $profile --kubelet-config examples/kubelet/node-identity.yaml --bin-dir $PWD/bin

  # faults (see hack/icr-emulator): e.g. the metadata service disabled
  curl -X POST "$url/_emulator/fault?endpoint=metadata-token&kind=hang"
  curl -X POST "$url/_emulator/fault?endpoint=all&kind=none"

EOT
wait "$pid"
