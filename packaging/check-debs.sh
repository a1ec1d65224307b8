#!/usr/bin/env bash
# Installs the Debian packages on this machine and uses them as the manual says
# (docs/src/operations.md, "Installing the packages"), then removes and purges them.
# For a disposable machine (CI), as root:
#
#   bash packaging/check-debs.sh [DIR (target/debian)]
set -euo pipefail
dir=${1:-target/debian}
nameserver_deb=$(ls "$dir"/dial-nameserver_*.deb)
updater_deb=$(ls "$dir"/dial-updater_*.deb)
step() { echo "== $*"; }
fail() { echo "FAILED: $*" >&2; exit 1; }
for tool in dig systemd-analyze man runuser; do
  command -v "$tool" >/dev/null || fail "$tool is not installed (bind9-dnsutils, systemd, man-db, util-linux)"
done

step "dpkg -i"
dpkg -i "$nameserver_deb" "$updater_deb"
owned=$(dpkg -L dial-nameserver dial-updater | sort -u)
conffiles=$(dpkg-query -W -f='${Conffiles}\n' dial-nameserver dial-updater | awk 'NF {print $1}')

step "the files, the user and the data directory"
for f in /usr/bin/nameserver /usr/bin/updater /lib/systemd/system/dial-nameserver.service \
  /lib/systemd/system/dial-updater.service /etc/dial/nameserver.toml /etc/dial/updater.toml \
  /usr/share/man/man1/nameserver.1.gz /usr/share/man/man1/updater-enroll.1.gz \
  /usr/share/bash-completion/completions/nameserver /usr/share/bash-completion/completions/updater \
  /usr/share/doc/dial-nameserver/examples/dial.example.zone; do
  test -e "$f" || fail "$f was not installed"
done
getent passwd dial >/dev/null || fail "no system user dial"
[ "$(stat -c '%U %a' /var/lib/dial-directory)" = "dial 700" ] || fail "/var/lib/dial-directory is not dial's, 0700"
[ "$(echo "$conffiles" | sort | tr '\n' ' ')" = "/etc/dial/nameserver.toml /etc/dial/updater.toml " ] \
  || fail "conffiles: $conffiles"

step "systemd-analyze verify"
systemd-analyze verify /lib/systemd/system/dial-nameserver.service /lib/systemd/system/dial-updater.service

step "man and completions"
MANWIDTH=80 man -P cat nameserver | grep -q SYNOPSIS || fail "man nameserver"
man -w updater-enroll >/dev/null || fail "man updater-enroll"
bash --norc -c 'source /usr/share/bash-completion/completions/nameserver && complete -p nameserver >/dev/null' \
  || fail "the bash completion does not load"

step "the installed nameserver, as its user (the unit's ExecStart)"
runuser -u dial -- /usr/bin/nameserver serve --config /etc/dial/nameserver.toml &
server=$!
for _ in $(seq 100); do
  dig @127.0.0.1 -p 5353 +short +time=1 +tries=1 dial.example SOA | grep -q . && break
  sleep 0.2
done
dig @127.0.0.1 -p 5353 +short dial.example SOA | grep -q 'ns1.dial.example.' || fail "no SOA answer"
[ "$(stat -c %U /var/lib/dial-directory/store)" = dial ] || fail "the store is not dial's"

step "a token; the terminal enrolls, publishes with the unit's command, and withdraws"
token=$(nameserver token create --kid acme --data /var/lib/dial-directory)
read -r code _ < <(updater enroll --server 127.0.0.1:5353 --token "$token" --key-file /etc/dial/updater.key)
[ "$(stat -c %a /etc/dial/updater.key)" = 600 ] || fail "the key file is not 0600"
sed -i -e 's|^server = .*|server = ["127.0.0.1:5353"]|' -e "s|^code = .*|code = \"$code\"|" \
  -e 's|^address = .*|address = ["127.0.0.1"]|' /etc/dial/updater.toml
updater run --config /etc/dial/updater.toml --key-file /etc/dial/updater.key &
daemon=$!
for _ in $(seq 50); do
  [ "$(dig @127.0.0.1 -p 5353 +short "$code.dial.example" A)" = 127.0.0.1 ] && break
  sleep 0.2
done
[ "$(dig @127.0.0.1 -p 5353 +short "$code.dial.example" A)" = 127.0.0.1 ] || fail "$code was not published"
kill -TERM "$daemon"; wait "$daemon"
[ -z "$(dig @127.0.0.1 -p 5353 +short "$code.dial.example" A)" ] || fail "$code was not withdrawn"
kill -TERM "$server"; wait "$server" || true

step "dpkg -r: nothing left but the config"
dpkg -r dial-updater dial-nameserver
for f in $owned; do
  [ -d "$f" ] && continue
  if [ -e "$f" ] && ! echo "$conffiles" | grep -qx "$f"; then fail "$f is left after dpkg -r"; fi
done
for f in $conffiles; do test -e "$f" || fail "the config $f was removed"; done
for package in dial-nameserver dial-updater; do
  [ "$(dpkg-query -W -f='${Status}' "$package")" = "deinstall ok config-files" ] || fail "$package state"
done
! ls /etc/systemd/system/*.wants/dial-* 2>/dev/null || fail "an enable link is left"

step "dpkg --purge"
dpkg --purge dial-updater dial-nameserver
! getent passwd dial >/dev/null || fail "the user dial is left"
for f in $conffiles; do test ! -e "$f" || fail "$f is left after purging"; done
rm -rf /var/lib/dial-directory /etc/dial
echo "the packages install, run, remove and purge cleanly"
