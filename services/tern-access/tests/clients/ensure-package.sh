#!/bin/sh
# ensure-package.sh BINARY PACKAGE: installs a Debian package a test needs when BINARY is
# missing. Tests run in parallel, so installs are serialized with a lock (dpkg allows one).
set -eu
binary=$1
package=$2
command -v "$binary" >/dev/null 2>&1 && exit 0
exec 9>/tmp/tern-apt.lock
flock 9
command -v "$binary" >/dev/null 2>&1 && exit 0
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q "$package" >/dev/null 2>&1 || {
    apt-get update -q >/dev/null 2>&1
    apt-get install -y -q "$package" >/dev/null
}
command -v "$binary" >/dev/null 2>&1
