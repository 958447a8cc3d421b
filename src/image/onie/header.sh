#!/bin/sh
# ONIE installer for @IMAGE@, made by imgbuild.
#
# A self-extracting archive: this POSIX sh header, a line that is exactly
# the marker named below, then an uncompressed tar of installer/ of exactly
# payload_size bytes with the SHA1 below (anything after those bytes, such as
# a signature, is not part of the payload). ONIE runs it as a NOS installer:
# the payload is checked, extracted to a temp directory and
# installer/install.sh runs there; its exit status is ours.
# `extract=1 sh FILE` only checks and extracts, and prints where.
set -e
payload_size=@PAYLOAD_SIZE@
payload_sha1=@PAYLOAD_SHA1@

self=$0
# The payload starts after the marker line; the header is text, so counting
# its lines and bytes never reads the binary part as text.
marker_line=$(awk '$0 == "exit_marker" { print NR; exit }' "$self")
if [ -z "$marker_line" ]; then
	echo "$self: no payload marker: not an installer, or truncated" >&2
	exit 1
fi
offset=$(( $(head -n "$marker_line" "$self" | wc -c) + 1 ))
payload() {
	tail -c +"$offset" "$self" | head -c "$payload_size"
}

echo "Verifying image checksum ..."
sum=$(payload | sha1sum | awk '{ print $1 }')
if [ "$sum" != "$payload_sha1" ]; then
	echo "Unable to verify archive checksum" >&2
	echo "Expected: $payload_sha1" >&2
	echo "Found   : $sum" >&2
	exit 1
fi
echo "OK."

tmp=$(mktemp -d "${TMPDIR:-/tmp}/imgbuild-onie.XXXXXX")
if [ -z "${extract:-}" ]; then
	# ONIE runs from RAM: its /tmp is already a tmpfs.
	trap 'cd /; rm -rf "$tmp"' EXIT
fi
payload | tar -xf - -C "$tmp"
if [ -n "${extract:-}" ]; then
	echo "Image extracted to: $tmp"
	exit 0
fi

cd "$tmp/installer"
rc=0
sh ./install.sh || rc=$?
cd /
exit $rc
