#!/bin/sh
# Builds a small busybox image archive (`docker save` format) from Debian's
# busybox-static, for `corral image push` (or `corral image import` on a node).
#   examples/images/busybox-image.sh [OUT.tar] [NAME:TAG]
set -eu
out=$(realpath -m "${1:-busybox.tar}")
name=${2:-busybox:latest}
[ -x /bin/busybox ] || { echo "error: /bin/busybox is missing (apt-get install busybox-static)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
root="$tmp/rootfs"
mkdir -p "$root/bin" "$root/etc" "$root/tmp" "$tmp/img"
cp /bin/busybox "$root/bin/busybox"
for applet in $(/bin/busybox --list); do
    [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
chmod 1777 "$root/tmp"
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$root" -cf "$tmp/layer.tar" .
layer=$(sha256sum "$tmp/layer.tar" | cut -d' ' -f1)
mv "$tmp/layer.tar" "$tmp/img/$layer.tar"
arch=$(dpkg --print-architecture 2>/dev/null || echo amd64)
printf '{"architecture":"%s","os":"linux","config":{"Env":["PATH=/bin"],"Cmd":["sh"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
    "$arch" "$layer" >"$tmp/config.json"
config=$(sha256sum "$tmp/config.json" | cut -d' ' -f1)
mv "$tmp/config.json" "$tmp/img/$config.json"
printf '[{"Config":"%s.json","RepoTags":["%s"],"Layers":["%s.tar"]}]' "$config" "$name" "$layer" >"$tmp/img/manifest.json"
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$tmp/img" -cf "$out" .
echo "$out"
