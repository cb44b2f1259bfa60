# ferrolb: one static-ish binary (`ferrolb controller | speaker | validate | announce`).
#
#   docker build --build-arg FERROLB_GIT_COMMIT=$(git rev-parse --short=12 HEAD) \
#       -t ghcr.io/ferrolb/ferrolb:0.1.0 .
#   docker push ghcr.io/ferrolb/ferrolb:0.1.0
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
 && install -D -m 0755 target/release/ferrolb /out/ferrolb

# glibc + libgcc, no shell; the :nonroot tag's user is 65532, we pin 65534
# (nobody) to match the manifests' runAsUser.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /out/ferrolb /ferrolb
USER 65534:65534
EXPOSE 7472
ENTRYPOINT ["/ferrolb"]
