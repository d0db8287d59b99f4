#!/usr/bin/env bash
# Checks the installed shape of libkinesis, as a user gets it:
#   - the shared library exports only public kn_* symbols (no kn__ internals, no helpers);
#   - its SONAME carries the ABI version;
#   - `meson install` into a staging dir gives <kinesis/common.h>, libkinesis.so/.a and a
#     pkg-config file with which a small program compiles, links and runs.
# Usage: check_library.sh BUILD_DIR
set -euo pipefail
build=$1
so=$build/libkinesis.so
fail() { echo "check_library: $*" >&2; exit 1; }

[ -f "$so" ] || fail "$so not built"
bad=$(nm -D --defined-only "$so" | awk '{print $3}' | grep -v '^kn_' | grep -v '^_' || true)
[ -z "$bad" ] || fail "symbols exported beside the public kn_* API: $(echo $bad | head -c 400)"
internal=$(nm -D --defined-only "$so" | awk '{print $3}' | grep '^kn__' || true)
[ -z "$internal" ] || fail "internal kn__ symbols are exported: $(echo $internal | head -c 400)"
n=$(nm -D --defined-only "$so" | awk '{print $3}' | grep -c '^kn_')
[ "$n" -ge 20 ] || fail "only $n public symbols exported"
soname=$(readelf -d "$so" | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')
[[ "$soname" =~ ^libkinesis\.so\.[0-9]+$ ]] || fail "unexpected SONAME '$soname'"

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
meson install -C "$build" --destdir "$stage" --quiet >/dev/null 2>&1 || fail "meson install failed"
hdr=$(find "$stage" -path '*/include/kinesis/common.h' | head -1)
pc=$(find "$stage" -name libkinesis.pc | head -1)
[ -n "$hdr" ] || fail "kinesis/common.h not installed"
[ -n "$pc" ] || fail "libkinesis.pc not installed"
find "$stage" -name 'libkinesis.a' | grep -q . || fail "static library not installed"
# Internal headers must not be installed.
if find "$stage" -path '*/include/*' -name '*.h' | grep -v '/kinesis/' | grep -q .; then
    fail "headers installed outside include/kinesis/"
fi
prefix_dir=$(dirname "$(dirname "$(dirname "$hdr")")")   # .../include -> prefix
libdir=$(dirname "$(find "$stage" -name "$soname" | head -1)")
cat >"$stage/user.c" <<'C'
#include <kinesis/common.h>
#include <stdio.h>
#include <string.h>
int main(void)
{
    char err[256] = "";
    kn_conf_t *conf = kn_conf_new();
    if (kn_conf_set(conf, "http.max.connections", "0", err, sizeof(err)) != KN_ERR_CONF_INVALID ||
        !strstr(err, "http.max.connections"))
        return 1;
    if (kn_conf_set(conf, "kinesis.endpoint", "http://127.0.0.1:1", err, sizeof(err)) != KN_ERR_OK)
        return 2;
    kn_error_t *e = kn_error_new();
    kn_client_t *c = kn_client_new(conf, e);
    if (!c)
        return 3;
    kn_client_destroy(c);
    kn_error_destroy(e);
    kn_conf_destroy(conf);
    printf("%s %s\n", kn_version_str(), kn_err2name(KN_ERR_TIMEOUT));
    return 0;
}
C
cflags=$(PKG_CONFIG_SYSROOT_DIR= PKG_CONFIG_PATH=$(dirname "$pc") pkg-config --define-prefix --cflags libkinesis)
libs=$(PKG_CONFIG_PATH=$(dirname "$pc") pkg-config --define-prefix --libs libkinesis)
# A sanitizer build of the library needs the program built the same way.
san=
if readelf -d "$so" | grep -q 'libasan'; then
    san="-fsanitize=address,undefined"
fi
cc -std=c11 -Wall -Wextra -Werror $san -I"$prefix_dir/include" $cflags "$stage/user.c" -L"$libdir" $libs -o "$stage/user" \
    || fail "a program using <kinesis/common.h> and pkg-config did not build"
out=$(LD_LIBRARY_PATH=$libdir "$stage/user") || fail "the program failed (exit $?)"
[ "$out" = "0.1.0 KN_ERR_TIMEOUT" ] || fail "unexpected output '$out'"
echo "check_library: $n public symbols, SONAME $soname, install + pkg-config + link OK"
