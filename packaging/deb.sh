#!/usr/bin/env bash
# Builds the Debian packages `dial-nameserver` and `dial-updater` with dpkg-deb:
#
#   bash packaging/deb.sh [OUT (target/debian)]
#
# Each holds its binary (release build), its man pages and bash, zsh and fish completions
# (packaging/docs.sh), its systemd unit (from nameserver/dist or updater/dist, running the
# binary from /usr/bin) and its config under /etc/dial/ (a conffile: kept on removal).
# The nameserver's maintainer scripts (packaging/debian/) add the system user `dial` and its
# data directory /var/lib/dial-directory (0700). The binaries are taken from $NAMESERVER and
# $UPDATER, or else built in release mode.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-target/debian}
if [ -z "${NAMESERVER:-}" ] || [ -z "${UPDATER:-}" ]; then
  cargo build --release --locked --quiet -p nameserver -p updater
  NAMESERVER=${CARGO_TARGET_DIR:-target}/release/nameserver
  UPDATER=${CARGO_TARGET_DIR:-target}/release/updater
fi
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
arch=$(dpkg --print-architecture)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
NAMESERVER=$NAMESERVER UPDATER=$UPDATER bash packaging/docs.sh "$work/docs" >/dev/null
mkdir -p "$out"

# stage PACKAGE PROGRAM: the files both packages have.
stage() {
  local package=$1 program=$2 root=$work/$1
  install -d "$root/DEBIAN" "$root/usr/bin" "$root/usr/share/man/man1" \
    "$root/usr/share/bash-completion/completions" "$root/usr/share/zsh/vendor-completions" \
    "$root/usr/share/fish/vendor_completions.d" "$root/lib/systemd/system" \
    "$root/etc/dial" "$root/usr/share/doc/$package"
  install -m 0755 "$(eval echo "\$${program^^}")" "$root/usr/bin/$program"
  strip --strip-unneeded "$root/usr/bin/$program" 2>/dev/null || true
  for page in "$work/docs/man/$program".*1 "$work/docs/man/$program"-*.1; do
    [ -e "$page" ] || continue
    gzip -9n < "$page" > "$root/usr/share/man/man1/$(basename "$page").gz"
  done
  install -m 0644 "$work/docs/completions/$program.bash" "$root/usr/share/bash-completion/completions/$program"
  install -m 0644 "$work/docs/completions/_$program" "$root/usr/share/zsh/vendor-completions/_$program"
  install -m 0644 "$work/docs/completions/$program.fish" "$root/usr/share/fish/vendor_completions.d/$program.fish"
  sed -e "s|/usr/local/bin/$program|/usr/bin/$program|" -e '1{/^# /d}' \
    "$program/dist/dial-$program.service" > "$root/lib/systemd/system/dial-$program.service"
  chmod 0644 "$root/lib/systemd/system/dial-$program.service"
  cat > "$root/usr/share/doc/$package/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: dial
Files: *
License: MIT or Apache-2.0
EOF
  echo "/etc/dial/$program.toml" > "$root/DEBIAN/conffiles"
}

# control PACKAGE DESCRIPTION: DEBIAN/control, with the installed size, and DEBIAN/md5sums.
control() {
  local root=$work/$1
  (cd "$root" && find . -type f ! -path './DEBIAN/*' -printf '%P\0' | xargs -0 md5sum > DEBIAN/md5sums)
  cat > "$root/DEBIAN/control" <<EOF
Package: $1
Version: $version
Architecture: $arch
Maintainer: dial <dial@localhost>
Installed-Size: $(du -sk --exclude=DEBIAN "$root" | cut -f1)
Depends: libc6
Section: net
Priority: optional
Homepage: https://github.com/
Description: $2
EOF
  dpkg-deb --build --root-owner-group "$root" "$out/$1_${version}_${arch}.deb" >/dev/null
  echo "$out/$1_${version}_${arch}.deb"
}

# The directory: its config reads the data directory the unit gives it.
stage dial-nameserver nameserver
sed -e 's|^# data = "/var/lib/dial-directory"|data = "/var/lib/dial-directory"|' \
  nameserver/dist/nameserver.toml > "$work/dial-nameserver/etc/dial/nameserver.toml"
grep -q '^data = "/var/lib/dial-directory"' "$work/dial-nameserver/etc/dial/nameserver.toml"
install -d "$work/dial-nameserver/usr/share/doc/dial-nameserver/examples"
install -m 0644 zones/dial.example.zone "$work/dial-nameserver/usr/share/doc/dial-nameserver/examples/"
for script in postinst prerm postrm; do
  install -m 0755 "packaging/debian/nameserver.$script" "$work/dial-nameserver/DEBIAN/$script"
done
control dial-nameserver "calling-code directory on DNS: the authoritative server
 Keeps each terminal reachable under a stable calling code: terminals publish their
 current addresses with signed DNS updates (or enroll themselves with a token), and
 anyone finds them with an ordinary DNS lookup."

# The terminal's updater: its config and key are the operator's to write.
stage dial-updater updater
sed -e 's|^key_file = .*|key_file = "/etc/dial/updater.key"|' updater/dist/updater.toml \
  > "$work/dial-updater/etc/dial/updater.toml"
chmod 0644 "$work/dial-updater/etc/dial/updater.toml"
for script in postinst prerm postrm; do
  install -m 0755 "packaging/debian/updater.$script" "$work/dial-updater/DEBIAN/$script"
done
control dial-updater "calling-code directory on DNS: the terminal's updater
 Enrolls a terminal with a customer's token, keeps its addresses current in the
 directory with signed DNS updates, and calls other terminals by code."
