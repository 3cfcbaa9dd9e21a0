# auditpipe images: ingest and detect, static binaries on distroless.
#
#   docker build --target ingest -t auditpipe/ingest .
#   docker build --target detect -t auditpipe/detect .
#
# deploy/compose builds both. The binaries are built with CGO_ENABLED=0 so
# they need no libc, and run as distroless's nonroot user (65532).

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION} AS build
WORKDIR /src
# Modules first, so editing code does not download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/ingest ./cmd/ingest && \
    CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/detect ./cmd/detect

FROM gcr.io/distroless/static-debian12:nonroot AS ingest
COPY --from=build /out/ingest /usr/local/bin/ingest
USER 65532:65532
# 8443 webhook (TLS), 8080 webhook (plain HTTP, local use), 9090 metrics.
EXPOSE 8443 8080 9090
ENTRYPOINT ["/usr/local/bin/ingest"]

FROM gcr.io/distroless/static-debian12:nonroot AS detect
COPY --from=build /out/detect /usr/local/bin/detect
USER 65532:65532
EXPOSE 9091
ENTRYPOINT ["/usr/local/bin/detect"]
