# Sourced by the setup scripts: `apt_install PACKAGE...` installs the Debian packages named
# (none: nothing), as root or through sudo, else stops with the command to run by hand.
apt_install() {
  [ $# -gt 0 ] || return 0
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  elif command -v sudo >/dev/null; then
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  else
    echo "$* not found: install (apt-get install $*) and run this again" >&2
    exit 1
  fi
}
