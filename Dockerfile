# syntax=docker/dockerfile:1
# QSP's image for your own pipeline (docker build, buildah, kaniko). It
# has the same file system and configuration as the archive `make image`
# builds without a daemon (internal/image): the static binary at /qsp, CA
# certificates, a passwd entry for the non-root user 65532, and an empty
# data directory /var/lib/qsp, the only place QSP writes, so the root file
# system can be read-only. No shell, no package manager.
#
#   docker build --build-arg VERSION=v1.2.3 --build-arg REVISION=$(git rev-parse HEAD) -t qsp .

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION} AS build
ARG VERSION=dev
ARG TARGETOS=linux
ARG TARGETARCH
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# Static (no cgo: SQLite is the pure-Go driver), paths trimmed, version
# stamped; the revision comes from Git when .git is in the context.
RUN CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -trimpath -buildvcs=auto -ldflags "-s -w -X github.com/qsp-dev/qsp/internal/cli.version=${VERSION}" -o /out/qsp ./cmd/qsp
# The root file system of the final image, assembled here because the
# final stage has no shell to run commands in.
RUN mkdir -p /rootfs/etc/ssl/certs /rootfs/etc/qsp /rootfs/var/lib/qsp \
 && cp /etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/ \
 && printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/var/lib/qsp:/sbin/nologin\n' > /rootfs/etc/passwd \
 && printf 'root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n' > /rootfs/etc/group \
 && printf 'hosts: files dns\n' > /rootfs/etc/nsswitch.conf \
 && cp /out/qsp /rootfs/qsp \
 && chown 65532:65532 /rootfs/var/lib/qsp && chmod 0700 /rootfs/var/lib/qsp

FROM scratch
ARG VERSION=dev
ARG REVISION=""
ARG CREATED=""
# The repository declares no license yet; pass LICENSES when it does.
ARG LICENSES=NOASSERTION
LABEL org.opencontainers.image.title="qsp" \
      org.opencontainers.image.description="SLO controller with an embedded TSDB, policies, alerting, deploy gates and playbooks" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="https://github.com/qsp-dev/qsp" \
      org.opencontainers.image.url="https://github.com/qsp-dev/qsp" \
      org.opencontainers.image.licenses="${LICENSES}"
COPY --from=build /rootfs/ /
ENV PATH=/ SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt HOME=/var/lib/qsp TMPDIR=/var/lib/qsp
USER 65532:65532
WORKDIR /var/lib/qsp
VOLUME /var/lib/qsp
EXPOSE 8080/tcp
ENTRYPOINT ["/qsp"]
CMD ["serve", "--config", "/etc/qsp/qsp.yaml"]
