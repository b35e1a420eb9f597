# The edge broker: Debian bookworm's mosquitto 2.x, on the project's offline Debian base.
#
# scripts/build-images.sh builds it (`docker build --network none`): the base
# (`debootstrap --variant=minbase bookworm`, then `docker import`) already holds Debian's
# `mosquitto` package, installed at debootstrap time, so nothing is fetched here.
# Runs as `mosquitto`, uid/gid 1883 (eclipse-mosquitto's, which the Helm chart's
# securityContext names); needs no writable path with this config (no persistence, logs on
# stdout), so it runs on a read-only root. The chart mounts its own config, ACL, users and
# certificate and runs `mosquitto -c /etc/mosquitto/conf/mosquitto.conf`.
ARG BASE
FROM ${BASE}
ARG VERSION=0.0.0
LABEL org.opencontainers.image.title="fluidos-sensors-mosquitto" \
      org.opencontainers.image.description="Debian's mosquitto on the fluidos-sensors base" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="EPL-2.0 OR BSD-3-Clause"
COPY mosquitto.conf /etc/mosquitto/mosquitto.conf
# Debian's postinst made a system user `mosquitto` with a low uid: give it eclipse-mosquitto's.
RUN set -eu; \
    command -v mosquitto && command -v mosquitto_passwd; \
    groupmod -g 1883 mosquitto; \
    usermod -u 1883 -g 1883 -d /var/lib/mosquitto mosquitto; \
    mkdir -p /run/mosquitto /var/lib/mosquitto /var/log/mosquitto; \
    chown 1883:1883 /run/mosquitto /var/lib/mosquitto /var/log/mosquitto; \
    rm -rf /etc/mosquitto/conf.d/* /etc/init.d/mosquitto /etc/logrotate.d/mosquitto
USER 1883:1883
WORKDIR /var/lib/mosquitto
EXPOSE 1883
CMD ["mosquitto", "-c", "/etc/mosquitto/mosquitto.conf"]
