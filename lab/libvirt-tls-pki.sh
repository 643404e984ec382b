#!/usr/bin/env bash
# The lab's TLS set-up for libvirtd (`listen_tls`, as an operator's remote host has it):
# a CA, a server certificate for 127.0.0.1/localhost and a client certificate, made once
# with openssl, and a libvirtd configuration that listens for TLS on 127.0.0.1:16514 with
# them. start-libvirtd.sh runs it and starts libvirtd with `--listen -f` that file.
#
# usage: libvirt-tls-pki.sh DIR     (prints the configuration file's path)
# DIR/client is what a client's `?pkipath=` names: cacert.pem, clientcert.pem,
# clientkey.pem, as libvirt looks them up. The extensions are the ones libvirt checks
# (virNetTLSContextCheckCert*): CA:TRUE + keyCertSign on the CA; CA:FALSE, digitalSignature
# + keyEncipherment and serverAuth / clientAuth on the others.
set -euo pipefail
dir=${1:?usage: libvirt-tls-pki.sh DIR}
mkdir -p "$dir/client"
chmod 0700 "$dir"
conf=$dir/libvirtd.conf
if [ -s "$dir/servercert.pem" ] && [ -s "$dir/client/clientcert.pem" ] && [ -s "$conf" ]; then
  echo "$conf"
  exit 0
fi
cd "$dir"
ec() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
ec cakey.pem
openssl req -x509 -new -key cakey.pem -days 3650 -subj "/O=memwarden lab/CN=memwarden lab CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -out cacert.pem 2>/dev/null
# leaf NAME SUBJECT EXTFILE-LINES...
leaf() {
  local name=$1 subj=$2; shift 2
  ec "$name"key.pem
  openssl req -new -key "$name"key.pem -subj "$subj" -out "$name".csr 2>/dev/null
  printf '%s\n' "$@" > "$name".ext
  openssl x509 -req -in "$name".csr -CA cacert.pem -CAkey cakey.pem -CAcreateserial \
    -days 3650 -extfile "$name".ext -out "$name"cert.pem 2>/dev/null
  rm -f "$name".csr "$name".ext
}
leaf server "/O=memwarden lab/CN=localhost" \
  "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
  "extendedKeyUsage=serverAuth" "subjectAltName=IP:127.0.0.1,DNS:localhost"
leaf client "/O=memwarden lab/CN=memwarden client" \
  "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
  "extendedKeyUsage=clientAuth"
cp cacert.pem client/cacert.pem
mv clientcert.pem clientkey.pem client/
chmod 0600 ./*key.pem client/clientkey.pem
cat > "$conf" <<CONF
# memwarden lab: libvirtd listens for TLS on loopback (lab/libvirt-tls-pki.sh)
listen_tls = 1
listen_tcp = 0
listen_addr = "127.0.0.1"
tls_port = "16514"
auth_tls = "none"
ca_file = "$dir/cacert.pem"
cert_file = "$dir/servercert.pem"
key_file = "$dir/serverkey.pem"
CONF
echo "$conf"
