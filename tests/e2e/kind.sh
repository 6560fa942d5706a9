#!/usr/bin/env bash
# certdepot end to end on a kind cluster, for machines with Docker (or Podman).
#
# Creates a kind cluster, builds the certdepot image and a Pebble image and loads them into
# it, runs Pebble in the cluster as the upstream CA, installs the Helm chart (operator and
# repository), creates the examples' tenant, applies examples/ as `certdepot demo` does and
# waits until every certificate resource is Ready and its kubernetes.io/tls Secret verifies
# against Pebble's root. Opt-in: `make kind-e2e`, or CERTDEPOT_KIND=1 pytest -m kind
# tests/e2e; never part of `make test` / .ci/run.
#
# Needs: docker (or DOCKER=podman), kind, kubectl, helm, openssl, curl, and the project's
# virtualenv (`make venv`). Environment:
#   CERTDEPOT_KIND_CLUSTER    cluster name (default certdepot-e2e)
#   CERTDEPOT_KIND_KEEP=1     leave the cluster running afterwards
#   CERTDEPOT_KIND_TIMEOUT    seconds to wait for each step (default 300)
#   CERTDEPOT_KIND_ARTIFACTS  directory for logs and object dumps on failure
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
E2E=tests/e2e
DOCKER=${DOCKER:-docker}
CLUSTER=${CERTDEPOT_KIND_CLUSTER:-certdepot-e2e}
TIMEOUT=${CERTDEPOT_KIND_TIMEOUT:-300}
ARTIFACTS=${CERTDEPOT_KIND_ARTIFACTS:-}
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
NS=certdepot              # the chart's namespace; the examples keep cluster Secrets here
RELEASE=certdepot
IMAGE=certdepot:e2e
PEBBLE_VERSION=$(sed -n 's/^PEBBLE_VERSION = "\(v[0-9.]*\)"$/\1/p' operator/certdepot/testenv/pins.py)
PEBBLE_IMAGE=certdepot-e2e-pebble:${PEBBLE_VERSION:?cannot read PEBBLE_VERSION from pins.py}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/certdepot-kind.XXXXXX")
FORWARD_PID=

log() { printf '\n==> %s\n' "$*"; }
fail() { echo "kind.sh: $*" >&2; exit 1; }
need() {
  command -v "$1" >/dev/null 2>&1 || { echo "kind.sh: '$1' is needed: $2" >&2; exit 2; }
}

need "$DOCKER" "install Docker, or set DOCKER=podman"
need kind "go install sigs.k8s.io/kind@v0.29.0 (and put \$(go env GOPATH)/bin on PATH)"
need kubectl "install kubectl, or use the provisioned one: PATH=\$PWD/.cache/testenv/bin:\$PATH"
need helm "install helm 3 or 4, or use the provisioned one: PATH=\$PWD/.cache/testenv/bin:\$PATH"
need openssl "apt-get install openssl"
need curl "apt-get install curl"
[ -x "$PYTHON" ] || { echo "kind.sh: $PYTHON is missing: run 'make venv'" >&2; exit 2; }

diagnose() {
  local dir=${ARTIFACTS:-$WORK/artifacts}
  mkdir -p "$dir"
  echo "kind.sh: failed; diagnostics in $dir" >&2
  kubectl get all,pvc,secrets,events -A -o wide >"$dir/objects.txt" 2>&1 || true
  kubectl get clustercertificaterepositories,certificaterepositories,certificatedownloads,delegatedcertificates \
    -A -o yaml >"$dir/certdepot-resources.yaml" 2>&1 || true
  for d in certdepot-operator certdepot-repository pebble; do
    kubectl -n "$NS" logs "deploy/$d" --all-containers --tail=500 >"$dir/$d.log" 2>&1 || true
    kubectl -n "$NS" describe "deploy/$d" >"$dir/$d.describe.txt" 2>&1 || true
  done
  tail -n 40 "$dir/certdepot-operator.log" "$dir/certdepot-repository.log" >&2 || true
}

cleanup() {
  local status=$?
  [ -n "$FORWARD_PID" ] && kill "$FORWARD_PID" 2>/dev/null || true
  [ "$status" -ne 0 ] && diagnose
  if [ "${CERTDEPOT_KIND_KEEP:-0}" = 1 ]; then
    echo "kind.sh: cluster $CLUSTER kept (kind delete cluster --name $CLUSTER)"
  else
    kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true
  fi
  [ -z "$ARTIFACTS" ] && [ "$status" -eq 0 ] && rm -rf "$WORK"
  exit "$status"
}
trap cleanup EXIT

log "kind cluster $CLUSTER"
if ! kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  kind create cluster --name "$CLUSTER" --wait "${TIMEOUT}s"
fi
export KUBECONFIG=$WORK/kubeconfig
kind get kubeconfig --name "$CLUSTER" >"$KUBECONFIG"

log "images: $IMAGE and $PEBBLE_IMAGE"
"$DOCKER" build -t "$IMAGE" --build-arg VERSION=e2e \
  --build-arg REVISION="$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
  --build-arg CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)" .
"$DOCKER" build -t "$PEBBLE_IMAGE" --build-arg PEBBLE_VERSION="$PEBBLE_VERSION" \
  -f "$E2E/pebble.Dockerfile" "$E2E"
# Through an archive, which works the same for Docker and Podman.
"$DOCKER" save -o "$WORK/images.tar" "$IMAGE" "$PEBBLE_IMAGE"
kind load image-archive "$WORK/images.tar" --name "$CLUSTER"

log "a throw-away CA for the HTTPS listeners of Pebble and the repository"
issue() {  # issue NAME SUBJECT_ALT_NAMES
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$1" \
    -keyout "$WORK/$1.key" -out "$WORK/$1.csr" 2>/dev/null
  printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\nbasicConstraints=critical,CA:FALSE\n' "$2" \
    >"$WORK/$1.ext"
  openssl x509 -req -in "$WORK/$1.csr" -CA "$WORK/ca.crt" -CAkey "$WORK/ca.key" \
    -CAcreateserial -days 2 -extfile "$WORK/$1.ext" -out "$WORK/$1.crt" 2>/dev/null
}
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj "/CN=certdepot kind e2e CA" -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -keyout "$WORK/ca.key" -out "$WORK/ca.crt" 2>/dev/null
issue pebble "DNS:pebble,DNS:pebble.$NS.svc,DNS:localhost,IP:127.0.0.1"
issue repository "DNS:$RELEASE-repository.$NS.svc,DNS:$RELEASE-repository.$NS,DNS:$RELEASE-repository"

kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f -
kubectl -n "$NS" create secret tls pebble-tls --cert "$WORK/pebble.crt" --key "$WORK/pebble.key" \
  --dry-run=client -o yaml | kubectl apply -f -
kubectl -n "$NS" create secret tls "$RELEASE-repository-tls" --cert "$WORK/repository.crt" \
  --key "$WORK/repository.key" --dry-run=client -o yaml | kubectl apply -f -

log "Pebble $PEBBLE_VERSION in namespace $NS"
sed "s|@PEBBLE_IMAGE@|$PEBBLE_IMAGE|g" "$E2E/manifests/pebble.yaml" | kubectl -n "$NS" apply -f -
kubectl -n "$NS" rollout status deploy/pebble --timeout="${TIMEOUT}s"

log "chart: the Services first (no repository pod yet), so Pebble can be pointed at them"
chart_args=(--namespace "$NS" --values "$E2E/values-kind.yaml"
            --set-file "repository.credentials.e2e-ca\.crt=$WORK/ca.crt")
# No --wait here: the SQLite claim binds only once a pod uses it (WaitForFirstConsumer).
helm upgrade --install "$RELEASE" charts/certdepot "${chart_args[@]}" --set repository.replicas=0
kubectl -n "$NS" rollout status "deploy/$RELEASE-operator" --timeout="${TIMEOUT}s"
REPOSITORY_IP=$(kubectl -n "$NS" get service "$RELEASE-repository" -o jsonpath='{.spec.clusterIP}')
[ -n "$REPOSITORY_IP" ] || fail "the repository Service has no cluster IP"

kubectl -n "$NS" port-forward deploy/pebble 18055:8055 15000:15000 >"$WORK/port-forward.log" 2>&1 &
FORWARD_PID=$!
for _ in $(seq 1 60); do
  # Any HTTP answer (even 404) means the forward is up.
  curl -s -o /dev/null http://127.0.0.1:18055/ && break
  sleep 1
done
# Every name Pebble validates resolves to the repository Service (http-01 on its port 80).
curl -fsS -X POST -d "{\"ip\": \"$REPOSITORY_IP\"}" http://127.0.0.1:18055/set-default-ipv4
curl -fsS --cacert "$WORK/ca.crt" https://127.0.0.1:15000/roots/0 >"$WORK/pebble-root.pem"
openssl x509 -in "$WORK/pebble-root.pem" -noout >/dev/null || fail "no Pebble root from /roots/0"

log "chart: the repository"
helm upgrade "$RELEASE" charts/certdepot "${chart_args[@]}" --wait --timeout "${TIMEOUT}s"
helm status "$RELEASE" --namespace "$NS"
# The chart's own promise: secure defaults hold in a real kubelet.
uid=$(kubectl -n "$NS" exec "deploy/$RELEASE-repository" -- id -u)
[ "$uid" = 10001 ] || fail "repository runs as uid $uid, not 10001"
if kubectl -n "$NS" exec "deploy/$RELEASE-repository" -- touch /opt/certdepot/probe 2>/dev/null; then
  fail "the repository's root filesystem is writable"
fi

log "tenant demo-cluster and its EAB credentials"
creds=$(kubectl -n "$NS" exec "deploy/$RELEASE-repository" -- \
  certdepot repository tenant create --config /etc/certdepot/config/config.yaml demo-cluster)
kid=$(sed -n 's/^eab-kid: *//p' <<<"$creds")
hmac=$(sed -n 's/^eab-hmac: *//p' <<<"$creds")
[ -n "$kid" ] && [ -n "$hmac" ] || fail "no EAB credentials in: $creds"

log "examples/, as certdepot demo applies them"
"$PYTHON" "$E2E/kind_examples.py" render "https://$RELEASE-repository.$NS.svc/directory" \
  "$WORK/ca.crt" "$kid" >"$WORK/examples.yaml"
# Namespaces first: the EAB Secret goes into one of them.
kubectl apply -f examples/00-namespaces.yaml
while read -r ns name key; do
  kubectl -n "$ns" create secret generic "$name" --from-literal="$key=$hmac" \
    --dry-run=client -o yaml | kubectl apply -f -
done < <("$PYTHON" "$E2E/kind_examples.py" eab-secrets "$NS")
kubectl apply -f "$WORK/examples.yaml"

log "waiting for every certificate resource to be Ready"
verified=0
while read -r plural ns name secret; do
  scope=(); [ "$ns" != - ] && scope=(-n "$ns")
  for _ in $(seq 1 "$TIMEOUT"); do
    kubectl get "$plural" "$name" "${scope[@]}" >/dev/null 2>&1 && break
    sleep 1
  done
  kubectl wait "$plural/$name" "${scope[@]}" --for=condition=Ready --timeout="${TIMEOUT}s"
  [ "$secret" = - ] && continue
  type=$(kubectl get secret "$secret" "${scope[@]}" -o jsonpath='{.type}')
  [ "$type" = kubernetes.io/tls ] || fail "Secret $ns/$secret has type '$type'"
  kubectl get secret "$secret" "${scope[@]}" -o jsonpath='{.data.tls\.crt}' | base64 -d >"$WORK/$secret.crt"
  kubectl get secret "$secret" "${scope[@]}" -o jsonpath='{.data.tls\.key}' | base64 -d >"$WORK/$secret.key"
  openssl x509 -in "$WORK/$secret.crt" -out "$WORK/$secret.leaf.pem"
  # The chain verifies to Pebble's root (fetched from Pebble, not taken from the Secret)
  # and the key belongs to the certificate: what an ingress controller needs.
  openssl verify -CAfile "$WORK/pebble-root.pem" -untrusted "$WORK/$secret.crt" \
    "$WORK/$secret.leaf.pem" >/dev/null || fail "Secret $ns/$secret does not verify to Pebble's root"
  [ "$(openssl x509 -in "$WORK/$secret.leaf.pem" -noout -pubkey)" = \
    "$(openssl pkey -in "$WORK/$secret.key" -pubout)" ] || fail "Secret $ns/$secret: key does not match"
  echo "ok: $plural/$name -> Secret $ns/$secret verifies to Pebble's root"
  verified=$((verified + 1))
done < <("$PYTHON" "$E2E/kind_examples.py" expected)
[ "$verified" -gt 0 ] || fail "no Secret was checked"

kubectl get clustercertificaterepositories,certificatedownloads,delegatedcertificates -A
echo "kind.sh: $verified passed, 0 failed"
