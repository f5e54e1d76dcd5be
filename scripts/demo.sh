#!/usr/bin/env bash
# The main job: the lab on local processes, end to end, in a throw-away lab home.
# Users and keys, the lab up in the trusted posture, a login, calls through the gateway (one
# allowed, one refused by the service for the role), attestation catching tampered code, lab down.
# Then the whole attack catalog in every posture: the matrix, and a non-zero exit when any
# scenario's outcome differs from its expectation.
set -euo pipefail
cd "$(dirname "$0")/.."
cli() { echo "\$ trusted-ms $*" >&2; node bin/run.js "$@"; }
posture=${1:-trusted}

demo=$(mktemp -d)
export TRUSTED_MS_HOME="$demo/home" TRUSTED_MS_KEYS="$demo/keys"
cleanup() { node bin/run.js lab down >/dev/null 2>&1 || true; rm -rf "$demo"; }
trap cleanup EXIT

cli role list
printf %s 'alice-lab-password' | cli user add alice --role analyst --password-stdin
cli user keygen alice --type rsa
cli user import --htpasswd fixtures/htpasswd/bcrypt.htpasswd --role guest
printf %s 'carol-pass-1' | cli user check-password carol --password-stdin
cli user list

# Processes, so the tampering below edits the very file the runtime measures.
cli lab up --posture "$posture" --runtime process
printf %s 'alice-lab-password' | cli user login alice --password-stdin
cli call orders /db/orders/records/ord-1
cli call orders /db/orders/query --data '{"where":{"customer":"cust-1"}}'
# The analyst role has no grant on salaries: the service itself refuses.
if cli call payroll /db/salaries/records; then
  echo "demo: the analyst read salaries" >&2
  exit 1
fi
cli service verify --all
# Tamper with one service's code on disk: the next verify catches it and the gateway stops routing.
echo '// tampered' >> "$TRUSTED_MS_HOME/lab/services/catalog/app/service.mjs"
cli service verify catalog || true
cli call catalog /db/catalog/records || true
cli lab status
cli lab down

# The attack catalog: each posture in a lab of its own on local processes, brought up and taken
# down by the command; the reports stay in a folder of their own after the demo.
reports=$(mktemp -d -t tms-demo-reports-XXXXXX)
if ! cli attack simulate --all --posture all --home "$demo/attacks" \
  --junit "$reports/attacks.xml" --html "$reports/attacks.html"; then
  echo "demo: the attack catalog failed (reports: $reports)" >&2
  exit 1
fi
echo "demo: attack reports in $reports (attacks.html, attacks.xml)" >&2
echo "demo: ok" >&2
