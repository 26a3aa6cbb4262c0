# Switchyard in a container: built with the Rust toolchain, run from a
# distroless image as a non-root user, with the binary and nothing else
# (the binary needs only glibc, which the base image has).
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY proto proto
COPY src src
COPY bench bench
RUN cargo build --release --locked --bin switchyard

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/switchyard /usr/local/bin/switchyard
USER nonroot:nonroot
EXPOSE 8080 9901
ENTRYPOINT ["/usr/local/bin/switchyard"]
CMD ["serve", "-c", "/etc/switchyard/config/switchyard.yaml"]
