# Build: docker build -t transition-matrix .
# Run:   docker run --rm -v /etc/transition-matrix:/config:ro -v /etc/matrix-synapse:/synapse:ro \
#          -v shim-cache:/data transition-matrix serve -config /config/shim.yaml
# The configuration and the signing key are mounted read-only; only /data is writable.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/shim ./cmd/shim

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/shim /usr/local/bin/shim
USER nonroot:nonroot
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8448
ENTRYPOINT ["/usr/local/bin/shim"]
CMD ["help"]
