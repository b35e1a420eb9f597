# Telegraf, the binary the testbed builds from the Go module proxy (testbed/binaries.py:
# github.com/influxdata/telegraf@v1.37.2 with the `custom` tag and only the plugins the
# project uses, static), copied onto the project's offline Debian base by
# scripts/build-images.sh.
#
# Runs as uid/gid 65532 (the Helm chart's restricted pods use it too); writes nothing, so a
# read-only root works. Reads /etc/telegraf/telegraf.conf (mount one; the chart does). Like
# the official image, arguments that start with "-" are telegraf's (`docker run IMAGE
# --test`), any other command runs as given (the chart's `telegraf --config ...`).
ARG BASE
FROM ${BASE}
ARG VERSION=0.0.0
LABEL org.opencontainers.image.title="fluidos-sensors-telegraf" \
      org.opencontainers.image.description="Telegraf (the project's plugins) on the fluidos-sensors base" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT"
COPY telegraf /usr/bin/telegraf
COPY telegraf-entrypoint /usr/local/bin/telegraf-entrypoint
RUN set -eu; \
    echo 'telegraf:x:65532:65532:Telegraf:/nonexistent:/usr/sbin/nologin' >> /etc/passwd; \
    echo 'telegraf:x:65532:' >> /etc/group; \
    mkdir -p /etc/telegraf/telegraf.d; \
    telegraf --version
ENV HOME=/tmp
USER 65532:65532
WORKDIR /tmp
ENTRYPOINT ["/usr/local/bin/telegraf-entrypoint"]
CMD ["telegraf"]
