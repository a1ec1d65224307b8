#!/usr/bin/env bash
# Writes the man pages (section 1, one per command and subcommand) and the bash, zsh and
# fish completions of `nameserver` and `updater`, generated from their command-line
# definitions, so they always match `--help`:
#
#   bash packaging/docs.sh [OUT (target/docs)]
#
# OUT/man/*.1 and OUT/completions/{NAME.bash,_NAME,NAME.fish}. The binaries are taken from
# $NAMESERVER and $UPDATER, or else built in release mode.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-target/docs}
if [ -z "${NAMESERVER:-}" ] || [ -z "${UPDATER:-}" ]; then
  cargo build --release --quiet -p nameserver -p updater
  NAMESERVER=${CARGO_TARGET_DIR:-target}/release/nameserver
  UPDATER=${CARGO_TARGET_DIR:-target}/release/updater
fi
rm -rf "$out/man" "$out/completions"
"$NAMESERVER" generate --man "$out/man" --completions "$out/completions"
"$UPDATER" generate --man "$out/man" --completions "$out/completions"
echo "man pages: $out/man ($(ls "$out/man" | wc -l)); completions: $out/completions"
