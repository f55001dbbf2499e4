#!/bin/sh
# The root filesystem of the e2e base image, as a tarball for `docker import` (run by e2e/images.py, as
# root). debootstrap's minbase first, then apt-get inside a chroot: debootstrap's own --include does not
# resolve virtual packages. The hash of this directory (this script and `packages`) is the base's tag.
#
# usage: build-rootfs.sh ROOTFS SUITE MIRROR SOURCES PACKAGES TARBALL VERSIONS
#   ROOTFS    an empty work directory (removed when done)
#   MIRROR    the Debian mirror debootstrap fetches SUITE from
#   SOURCES   the deb822 apt sources the image keeps (apt-get update works inside the image)
#   PACKAGES  the package list (comments and blank lines ignored)
#   TARBALL   where to write the tarball
#   VERSIONS  where to write "package version" of every listed package
set -eu
rootfs=$1 suite=$2 mirror=$3 sources=$4 package_list=$5 tarball=$6 versions=$7

# Fixed ids for the users the images share with their real counterparts, created before the packages
# so that no package's system user takes them: postgres is 999 in docker-library/postgres, nginx 101
# in nginxinc/nginx-unprivileged.
POSTGRES_ID=999
NGINX_ID=101

in_root() {
    chroot "$rootfs" env DEBIAN_FRONTEND=noninteractive LC_ALL=C "$@"
}

release_proc() {
    if mountpoint -q "$rootfs/proc"; then umount "$rootfs/proc"; fi
}

packages=$(grep -v '^[[:space:]]*#' "$package_list" | xargs)

debootstrap --variant=minbase "$suite" "$rootfs" "$mirror"
trap release_proc EXIT
mount -t proc proc "$rootfs/proc"

# The apt sources of the host, so that apt-get inside the image finds the same archive and updates.
rm -f "$rootfs/etc/apt/sources.list"
cp "$sources" "$rootfs/etc/apt/sources.list.d/debian.sources"
# No service starts inside a chroot or a build container (as in Debian's official images).
printf '#!/bin/sh\nexit 101\n' > "$rootfs/usr/sbin/policy-rc.d"
chmod 0755 "$rootfs/usr/sbin/policy-rc.d"
# Leave out documentation and translations, as Debian's slim images do, and the 210 MB of past time
# zone releases that libjs-moment-timezone (for Prometheus's classic UI) carries as JSON files.
cat > "$rootfs/etc/dpkg/dpkg.cfg.d/excludes" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/javascript/moment-timezone/data/*
EOF
# As in Debian's official images: apt keeps no package caches or downloaded packages in an image
# layer, and fetches no translations (also for the apt-get of the images built FROM this one).
cat > "$rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb || true"; };
Acquire::Languages "none";
EOF

in_root groupadd --system --gid "$POSTGRES_ID" postgres
in_root useradd --system --gid postgres --uid "$POSTGRES_ID" --home-dir /var/lib/postgresql --shell /bin/bash postgres
in_root groupadd --system --gid "$NGINX_ID" nginx
in_root useradd --system --gid nginx --uid "$NGINX_ID" --home-dir /var/cache/nginx --no-create-home \
    --shell /sbin/nologin nginx

in_root apt-get update
# As docker-library/postgres: postgresql-common first, told not to create a cluster of its own.
in_root apt-get install -y --no-install-recommends postgresql-common
sed -ri 's/^#?(create_main_cluster) .*$/\1 = false/' "$rootfs/etc/postgresql-common/createcluster.conf"
# shellcheck disable=SC2086 # one word per package
in_root apt-get install -y --no-install-recommends $packages
# shellcheck disable=SC2016,SC2086 # dpkg-query's own ${fields}
in_root dpkg-query --show --showformat '${Package} ${Version}\n' $packages > "$versions"

# The en_US.UTF-8 locale the postgres image initialises its databases with.
echo 'en_US.UTF-8 UTF-8' >> "$rootfs/etc/locale.gen"
in_root locale-gen
ln -s busybox "$rootfs/usr/bin/wget"

in_root apt-get clean
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/tmp/* "$rootfs"/root/.cache
find "$rootfs/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
rm -rf "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/*
find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
find "$rootfs/var/log" -type f -delete
: > "$rootfs/etc/resolv.conf"
release_proc

tar --create --file "$tarball" --numeric-owner --directory "$rootfs" \
    --exclude './proc/*' --exclude './sys/*' --exclude './dev/*' .
rm -rf "$rootfs"
