#!/bin/sh
# The redis stand-in's entrypoint: what docker-library/redis's docker-entrypoint.sh does for the plan,
# written here. Arguments that start with "-" or a *.conf file are redis-server's; the umask becomes
# 0077 when it is the default 0022 (files Redis writes are its own only); then exec the command.
# Not reproduced (the plan runs it as uid 999): the chown of /data and the step down from root, which
# stop the container with a message instead.
set -eu
case ${1:-} in
-* | *.conf) set -- redis-server "$@" ;;
esac
if [ "${1:-}" = redis-server ] && [ "$(id -u)" = 0 ]; then
    echo "$0: this stand-in does not step down from root: run it as the redis user (uid 999)" >&2
    exit 1
fi
if [ "$(umask)" = 0022 ]; then
    umask 0077
fi
exec "$@"
