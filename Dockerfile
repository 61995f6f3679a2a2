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

# The RocksDB import (`shim import conduit` into Conduit's rocksdb backend) needs the shim-rocksdb
# helper: docker build --target rocksdb -t transition-matrix:rocksdb .   (rocksdict from PyPI)
FROM python:3.11-slim-bookworm AS rocksdb
RUN python3 -m venv /opt/shim-rocksdb \
 && /opt/shim-rocksdb/bin/pip install --no-cache-dir --disable-pip-version-check rocksdict==0.3.29
COPY --from=build /out/shim /usr/local/bin/shim
COPY rocksdb-helper/shim-rocksdb /opt/shim-rocksdb/bin/shim-rocksdb
RUN sed -i '1s|.*|#!/opt/shim-rocksdb/bin/python|' /opt/shim-rocksdb/bin/shim-rocksdb \
 && /opt/shim-rocksdb/bin/shim-rocksdb --version \
 && useradd --system --uid 65532 --home-dir /data nonroot
ENV SHIM_ROCKSDB=/opt/shim-rocksdb/bin/shim-rocksdb
USER nonroot:nonroot
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8448
ENTRYPOINT ["/usr/local/bin/shim"]
CMD ["help"]

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/shim /usr/local/bin/shim
USER nonroot:nonroot
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8448
ENTRYPOINT ["/usr/local/bin/shim"]
CMD ["help"]
