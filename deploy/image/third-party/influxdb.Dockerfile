# InfluxDB 1.8 (`influxd`), the binary the testbed builds from the Go module proxy
# (testbed/binaries.py: github.com/influxdata/influxdb@v1.8.10, static), copied onto the
# project's offline Debian base; scripts/build-images.sh puts it in the build context.
#
# Runs as uid/gid 1000 (the Helm chart's securityContext), data in /var/lib/influxdb (a
# volume), nothing else written: read-only root friendly. The entrypoint takes the official
# image's variables for a first start: INFLUXDB_DB, INFLUXDB_ADMIN_USER,
# INFLUXDB_ADMIN_PASSWORD (see influxdb-entrypoint); every INFLUXDB_<SECTION>_<KEY> variable
# is influxd's own config override.
ARG BASE
FROM ${BASE}
ARG VERSION=0.0.0
LABEL org.opencontainers.image.title="fluidos-sensors-influxdb" \
      org.opencontainers.image.description="InfluxDB 1.8 on the fluidos-sensors base" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT"
COPY influxd /usr/bin/influxd
COPY influxdb.conf /etc/influxdb/influxdb.conf
COPY influxdb-entrypoint /usr/local/bin/influxdb-entrypoint
RUN set -eu; \
    echo 'influxdb:x:1000:1000:InfluxDB:/var/lib/influxdb:/usr/sbin/nologin' >> /etc/passwd; \
    echo 'influxdb:x:1000:' >> /etc/group; \
    mkdir -p /var/lib/influxdb; chown 1000:1000 /var/lib/influxdb; chmod 0750 /var/lib/influxdb; \
    influxd version
ENV INFLUXDB_CONFIG_PATH=/etc/influxdb/influxdb.conf \
    HOME=/var/lib/influxdb
USER 1000:1000
WORKDIR /var/lib/influxdb
VOLUME /var/lib/influxdb
EXPOSE 8086
ENTRYPOINT ["/usr/local/bin/influxdb-entrypoint"]
CMD ["influxd"]
