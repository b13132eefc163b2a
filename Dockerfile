# syntax=docker/dockerfile:1

# Build stage: the relay and the demo downstream, static binaries.
FROM golang:1.26 AS build
WORKDIR /src
# Modules first, so that a change to the code does not download them again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/relay ./cmd/relay && \
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/demo-downstream ./cmd/demo-downstream

# Final stage: no shell, no package manager, a non-root user.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/relay /out/demo-downstream /usr/local/bin/
USER nonroot:nonroot
# The built-in configuration listens on 127.0.0.1:9090, out of reach from
# outside the container: give http.listen in the configuration file, or
# RELAY_HTTP_LISTEN=0.0.0.0:9090 (an environment variable overrides the
# file, so the image sets none).
EXPOSE 9090
ENTRYPOINT ["/usr/local/bin/relay"]
CMD ["run"]
