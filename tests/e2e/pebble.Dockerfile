# syntax=docker/dockerfile:1
# Pebble and pebble-challtestsrv for the kind end-to-end run, built from their Go module at
# the version the local test environment pins (certdepot.testenv.provision.PEBBLE_VERSION),
# so the cluster run and `make test` exercise the same CA.
ARG GO_IMAGE=golang:1.26-bookworm
FROM ${GO_IMAGE} AS build
ARG PEBBLE_VERSION=v2.10.3
ENV CGO_ENABLED=0 GOBIN=/out GOFLAGS=-trimpath
RUN go install -ldflags "-s -w -X main.version=${PEBBLE_VERSION}" \
      github.com/letsencrypt/pebble/v2/cmd/pebble@${PEBBLE_VERSION} \
      github.com/letsencrypt/pebble/v2/cmd/pebble-challtestsrv@${PEBBLE_VERSION}

FROM debian:bookworm-slim
COPY --from=build /out/ /usr/local/bin/
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/pebble"]
