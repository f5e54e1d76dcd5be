#!/bin/sh
# A trusted-ms client in POSIX sh, curl and OpenSSL 3, written from docs/protocol.md alone: the
# whole `trusted` login (X25519 client key, the signed challenge, the session key by X25519 + HKDF)
# and, when a path is given, one request through the gateway with its proof of possession.
#
# usage: login.sh GATEWAY_URL USER PRIVATE_KEY.pem [PATH]
#   GATEWAY_URL    e.g. https://127.0.0.1:8443 (`trusted-ms lab status` shows it)
#   USER           the user name
#   PRIVATE_KEY    the user's private key, PEM (PKCS#8 or PKCS#1): Ed25519, or RSA of 2048 bits and more
#                  (OpenSSL cannot read OpenSSH-format keys; `trusted-ms user login --key` can)
#   PATH           optional: a GET to make with the session, e.g. /svc/accounts/db/accounts/records
# environment:
#   TMS_AUDIENCE   required: the security service this login is meant for, trusted-ms://<lab-id>/security.
#                  The challenge is signed only if it names exactly this audience (docs/protocol.md,
#                  "Why signed bytes and not the raw nonce").
#   TMS_PASSWORD   the password; when unset, the first line of standard input
#   TMS_SESSION    optional: a file to keep the session in (ticket, session key, jti), mode 0600
#   TMS_CACERT     the lab CA's certificate, for a gateway on https (`trusted-ms lab up` prints it): the
#                  only CA its certificate is checked against
# Exit status: 0 when the login (and the request) succeeded; 1 with the server's error code otherwise.
# jq is not needed: every value read from an answer has a strict grammar (no quotes, no escapes).
set -eu
umask 077

die() { printf 'login.sh: %s\n' "$*" >&2; exit 1; }
# edge:tls: the gateway is checked against the lab CA, and only it.
tms_curl() { if [ -n "${TMS_CACERT:-}" ]; then curl --cacert "$TMS_CACERT" "$@"; else curl "$@"; fi; }
[ $# -ge 3 ] || die 'usage: login.sh GATEWAY_URL USER PRIVATE_KEY.pem [PATH]'
GW=${1%/}; NAME=$2; KEY=$3; CALL_PATH=${4:-}
[ -n "${TMS_AUDIENCE:-}" ] || die 'set TMS_AUDIENCE=trusted-ms://<lab-id>/security (the service you mean to log in to)'
[ -r "$KEY" ] || die "cannot read the private key $KEY"
if [ -z "${TMS_PASSWORD:-}" ]; then
  if [ -t 0 ]; then
    # Not echoed on a terminal; echo restored however the read ends.
    printf 'Password for %s: ' "$NAME" >&2
    trap 'stty echo' EXIT INT TERM
    stty -echo
    IFS= read -r TMS_PASSWORD || true
    stty echo
    echo >&2
  else
    IFS= read -r TMS_PASSWORD || true
  fi
fi
[ -n "$TMS_PASSWORD" ] || die 'no password: set TMS_PASSWORD or give it on standard input'

W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT INT TERM

b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
unb64url() {
  b=$(printf '%s' "$1" | tr -- '-_' '+/')
  while [ $(( ${#b} % 4 )) -ne 0 ]; do b="$b="; done
  printf '%s\n' "$b" | openssl base64 -d -A
}
hex() { od -An -v -tx1 | tr -d ' \n'; }
# A string or number member of a one-level JSON object, by name (values here never hold quotes).
field() { sed -n "s/.*\"$1\":\"\{0,1\}\([^\",}]*\)\"\{0,1\}[,}].*/\1/p" "$2" | head -n 1; }
json_string() { printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g'; }

# POST JSON from a file; the answer goes to $W/answer; fails with the server's code.
post() {
  status=$(tms_curl -sS -o "$W/answer" -w '%{http_code}' -H 'content-type: application/json' \
    --data-binary "@$2" "$GW$1") || die "cannot reach $GW"
  case $status in 2??) ;; *) die "$1 answered $status $(field code "$W/answer"): $(field message "$W/answer")" ;; esac
}

check() { printf '%s' "$2" | grep -Eqx "$3" || die "the challenge's $1 is malformed: refusing to sign it"; }

# 1. A fresh X25519 key for this login; its raw public key (the last 32 bytes of the SPKI DER).
openssl genpkey -algorithm x25519 -out "$W/x25519.pem"
CLIENT_KEY=$(openssl pkey -in "$W/x25519.pem" -pubout -outform DER | tail -c 32 | b64url)

# 2. Password for a challenge (the password goes in a 0600 file, never on a command line).
case $TMS_PASSWORD in *[[:cntrl:]]*) die 'the password holds a control character' ;; esac
printf '{"user":"%s","password":"%s","clientKey":"%s"}' \
  "$(json_string "$NAME")" "$(json_string "$TMS_PASSWORD")" "$CLIENT_KEY" > "$W/challenge-request.json"
post /v1/auth/challenge "$W/challenge-request.json"
CH_ID=$(field id "$W/answer"); CH_NONCE=$(field nonce "$W/answer"); CH_USER=$(field user "$W/answer")
CH_AUDIENCE=$(field audience "$W/answer"); CH_CLIENT_KEY=$(field clientKey "$W/answer")
CH_EXPIRES_AT=$(field expiresAt "$W/answer")

# 3. Sign only what was meant for us: the grammars, our audience, our user, our key.
check id "$CH_ID" '[A-Za-z0-9_-]{16,128}'
check nonce "$CH_NONCE" '[A-Za-z0-9_-]{22,128}'
check user "$CH_USER" '[a-z][a-z0-9._-]{0,31}'
check audience "$CH_AUDIENCE" '[a-z0-9][a-z0-9.:/_-]{0,127}'
check client-key "$CH_CLIENT_KEY" '[A-Za-z0-9_-]{43}'
check expires-at "$CH_EXPIRES_AT" '[1-9][0-9]{0,15}'
[ "$CH_AUDIENCE" = "$TMS_AUDIENCE" ] || die "the challenge is for $CH_AUDIENCE, not $TMS_AUDIENCE: refusing to sign it"
[ "$CH_USER" = "$NAME" ] || die 'the challenge names another user: refusing to sign it'
[ "$CH_CLIENT_KEY" = "$CLIENT_KEY" ] || die 'the challenge carries another client key: refusing to sign it'

printf 'trusted-ms login-challenge v1\nid=%s\nnonce=%s\nuser=%s\naudience=%s\nclient-key=%s\nexpires-at=%s\n' \
  "$CH_ID" "$CH_NONCE" "$CH_USER" "$CH_AUDIENCE" "$CH_CLIENT_KEY" "$CH_EXPIRES_AT" > "$W/challenge.txt"
if openssl pkey -in "$KEY" -noout -text 2>/dev/null | head -n 1 | grep -q 'ED25519'; then
  openssl pkeyutl -sign -rawin -inkey "$KEY" -in "$W/challenge.txt" -out "$W/challenge.sig"
else
  openssl dgst -sha256 -sign "$KEY" -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:32 \
    -sigopt rsa_mgf1_md:sha256 -out "$W/challenge.sig" "$W/challenge.txt"
fi
SIGNATURE=$(b64url < "$W/challenge.sig")

# 4. The answer: a ticket and the service's X25519 key.
printf '{"id":"%s","signature":"%s"}' "$CH_ID" "$SIGNATURE" > "$W/verify-request.json"
post /v1/auth/verify "$W/verify-request.json"
TICKET=$(field ticket "$W/answer"); SERVER_KEY=$(field serverKey "$W/answer")
EXPIRES_AT=$(field expiresAt "$W/answer"); THUMBPRINT=$(field thumbprint "$W/answer")
check ticket "$TICKET" '[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+'
check serverKey "$SERVER_KEY" '[A-Za-z0-9_-]{43}'

# 5. The session key: X25519 with the service's key (as SPKI DER: a fixed 12-byte prefix, RFC 8410),
#    then HKDF-SHA256, salt the challenge id, info "trusted-ms session-key v1", 32 bytes.
{ printf '\060\052\060\005\006\003\053\145\156\003\041\000'; unb64url "$SERVER_KEY"; } > "$W/server.der"
openssl pkey -pubin -inform DER -in "$W/server.der" -out "$W/server.pem"
SHARED=$(openssl pkeyutl -derive -inkey "$W/x25519.pem" -peerkey "$W/server.pem" | hex)
[ "$SHARED" != "0000000000000000000000000000000000000000000000000000000000000000" ] || die 'low-order server key'
SESSION_KEY=$(openssl kdf -keylen 32 -kdfopt digest:SHA256 -kdfopt "hexkey:$SHARED" -kdfopt "salt:$CH_ID" \
  -kdfopt 'info:trusted-ms session-key v1' HKDF | tr -d ':' | tr 'A-F' 'a-f')
JTI=$(unb64url "$(printf '%s' "$TICKET" | cut -d. -f2)" > "$W/claims.json"; field jti "$W/claims.json")
check jti "$JTI" '[A-Za-z0-9_-]{16,128}'
printf 'logged in as %s until %s (key %s)\n' "$NAME" "$EXPIRES_AT" "$THUMBPRINT" >&2
if [ -n "${TMS_SESSION:-}" ]; then
  printf 'TICKET=%s\nSESSION_KEY=%s\nJTI=%s\nEXPIRES_AT=%s\n' "$TICKET" "$SESSION_KEY" "$JTI" "$EXPIRES_AT" > "$TMS_SESSION"
fi
[ -n "$CALL_PATH" ] || exit 0

# 6. One request with its proof: HMAC-SHA256 with the session key over the canonical string
#    (docs/protocol.md, "The proof header"). The time in milliseconds from whole seconds: POSIX
#    date has no %N, and the window is 30 s.
T="$(date +%s)000"
NONCE=$(openssl rand 16 | b64url)
BODY_SHA=$(printf '' | openssl dgst -sha256 -r | cut -d' ' -f1)
printf 'trusted-ms proof v1\nGET\n%s\n%s\n%s\n%s\n%s\n' "$CALL_PATH" "$T" "$NONCE" "$BODY_SHA" "$JTI" > "$W/proof.txt"
MAC=$(openssl dgst -sha256 -mac HMAC -macopt "hexkey:$SESSION_KEY" -binary < "$W/proof.txt" | b64url)
# The ticket goes in a header file, not on curl's command line (which `ps` shows).
printf 'authorization: Bearer %s\ntms-proof: v1.%s.%s.%s\n' "$TICKET" "$T" "$NONCE" "$MAC" > "$W/headers"
status=$(tms_curl -sS -o "$W/answer" -w '%{http_code}' -H "@$W/headers" "$GW$CALL_PATH") || die "cannot reach $GW"
cat "$W/answer"; echo
case $status in 2??) ;; *) die "GET $CALL_PATH answered $status $(field code "$W/answer")" ;; esac
