# ferrolb: one binary (`ferrolb controller | speaker | validate | announce`).
#
# For people with Docker. Without it, `scripts/image` builds the same image as an
# OCI archive (target/image/ferrolb-<version>.oci.tar, reproducible); README,
# "Install on a cluster". Both give the same layout: the root filesystem comes from
# `scripts/image --rootfs` in both cases: /ferrolb, the shared libraries it links
# (Debian's libc6, libgcc-s1) and the loader, /etc/passwd and /etc/group with nobody
# (65534), /etc/nsswitch.conf; no shell, no CA certificates (the kube-apiserver is
# verified against the service account's ca.crt).
#
#   docker build --build-arg FERROLB_GIT_COMMIT=$(git rev-parse --short=12 HEAD) \
#       -t ghcr.io/ferrolb/ferrolb:0.1.0 .
#
# manifests/speaker.yaml runs this image as UID 65534 with a read-only root
# filesystem and no capabilities.

FROM rust:1-bookworm AS builder
WORKDIR /src
# .git is not sent (.dockerignore): the commit for `ferrolb --version` comes in here.
ARG FERROLB_GIT_COMMIT=unknown
ENV FERROLB_GIT_COMMIT=$FERROLB_GIT_COMMIT
COPY . .
RUN cargo build --release --locked -p ferrolb \
 && FERROLB_BIN=target/release/ferrolb scripts/image --rootfs /rootfs

FROM scratch
COPY --from=builder /rootfs/ /
USER 65534:65534
EXPOSE 7472
ENTRYPOINT ["/ferrolb"]
LABEL org.opencontainers.image.title="ferrolb" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://example.invalid/ferrolb"
