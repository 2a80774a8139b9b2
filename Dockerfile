# tidemark's container image: Debian 12 with the Debian package `make deb`
# builds (debian/), so the image holds exactly what the package installs:
# /usr/bin/tidemark, the user tidemark, /etc/tidemark, /var/lib/tidemark.
#   docker build -t tidemark:$(./tidemark version | cut -d' ' -f2) .
#   docker run --rm tidemark version
# Kubernetes (a native sidecar): config/kubernetes/, docs/deploy.md.

# Stage 1: build the package with Debian's tools; the build dependencies
# come from debian/control (apt-get build-dep on the source directory).
FROM debian:12 AS build
WORKDIR /src
COPY debian/ debian/
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get build-dep -y --no-install-recommends ./ \
 && rm -rf /var/lib/apt/lists/*
COPY . .
RUN make deb

# Stage 2: Debian 12 with the package installed (apt resolves its Depends);
# ca-certificates for S3 over HTTPS.
FROM debian:12-slim
COPY --from=build /src/build/deb/tidemark_*.deb /tmp/
# /etc/tidemark: 0755 here, not the package's 0750 root:tidemark: the
# configuration and key are mounted into it at run time, read by whichever
# uid runs the container (Kubernetes' runAsUser).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates /tmp/tidemark_*.deb \
 && rm -rf /var/lib/apt/lists/* /tmp/tidemark_*.deb \
 && dpkg-statoverride --remove /etc/tidemark && chmod 0755 /etc/tidemark
# The package's system user; Kubernetes' runAsUser overrides it (the
# sidecar must be able to write the database's directory: run it as the
# application's user).
# (No WORKDIR in /var/lib/tidemark: mode 0750, another uid could not
# start there.)
USER tidemark
# metrics and /healthz when `metrics: listen: 0.0.0.0:9187` is configured
EXPOSE 9187
ENTRYPOINT ["/usr/bin/tidemark"]
CMD ["replicate", "-c", "/etc/tidemark/tidemark.yml"]
