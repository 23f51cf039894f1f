# syntax=docker/dockerfile:1
# The operator image: a static (musl) release binary on a distroless base,
# running as a non-root user. Build and load into kind:
#   docker build -t cafe-operator:dev .
#   kind load docker-image cafe-operator:dev
#   helm install cafe-operator charts/cafe-operator --set image.repository=cafe-operator --set image.tag=dev

FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add x86_64-unknown-linux-musl
WORKDIR /src
# Dependencies first, so a source change does not rebuild them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src tests/e2e && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
 && echo 'fn main() {}' > tests/e2e/main.rs \
 && cargo build --release --locked --target x86_64-unknown-linux-musl \
 && rm -rf src
COPY src ./src
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked --target x86_64-unknown-linux-musl \
 && cp target/x86_64-unknown-linux-musl/release/cafe-operator /cafe-operator

# Only the binary and CA certificates; uid/gid 65532 ("nonroot").
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /cafe-operator /cafe-operator
USER 65532:65532
EXPOSE 8080 8081
# The chart's command is the same (tests/dockerfile.rs checks).
ENTRYPOINT ["/cafe-operator"]
CMD ["run"]
