#!/usr/bin/env bash
# The main job, for now: the CLI end to end on users, roles and keys, in a throw-away lab home.
set -euo pipefail
cd "$(dirname "$0")/.."
cli() { echo "\$ trusted-ms $*" >&2; node bin/run.js "$@"; }

demo=$(mktemp -d)
trap 'rm -rf "$demo"' EXIT
export TRUSTED_MS_HOME="$demo/home" TRUSTED_MS_KEYS="$demo/keys"

cli role list
printf %s 'alice-lab-password' | cli user add alice --role analyst --password-stdin
cli user keygen alice
printf %s 'bob-lab-password' | cli user add bob --role clerk --password-stdin
cli user keygen bob --type rsa --bits 2048
cli user import --htpasswd fixtures/htpasswd/bcrypt.htpasswd --role guest
printf %s 'carol-pass-1' | cli user check-password carol --password-stdin
cli user list
cli user show alice --json
ls -l "$TRUSTED_MS_KEYS"
# A wrong password must fail with AUTH_FAILED and a non-zero exit.
if printf %s 'wrong' | cli user check-password alice --password-stdin; then
  echo "demo: a wrong password was accepted" >&2
  exit 1
fi
echo "demo: ok (lab home $TRUSTED_MS_HOME, removed on exit)" >&2
