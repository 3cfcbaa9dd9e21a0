#!/bin/sh
# Generates ingest's local TLS material into /tls, once: a CA, a serving
# certificate for ingest (and localhost), a client certificate a
# kube-apiserver can present (its CN is the cluster name), and a bearer
# token. For local use only: production certificates come from your PKI.
set -eu
cd /tls
if [ -s ingest.crt ] && [ -s tokens.csv ]; then
	echo "TLS material already in /tls; delete the ingest-tls volume to regenerate"
	exit 0
fi
apk add --no-cache openssl >/dev/null
cluster="${AUDITPIPE_CLUSTER:-local}"
umask 077
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 825 \
	-subj "/CN=auditpipe local CA" -keyout ca.key -out ca.crt
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=ingest" \
	-keyout ingest.key -out ingest.csr
printf 'subjectAltName=DNS:ingest,DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' > ingest.ext
openssl x509 -req -in ingest.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 825 \
	-extfile ingest.ext -out ingest.crt
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=${cluster}" \
	-keyout apiserver-client.key -out apiserver-client.csr
printf 'extendedKeyUsage=clientAuth\n' > client.ext
openssl x509 -req -in apiserver-client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 825 \
	-extfile client.ext -out apiserver-client.crt
# token,name,cluster: see ingest --token-file.
printf '%s,local-apiserver,%s\n' "$(openssl rand -hex 32)" "$cluster" > tokens.csv
rm -f ./*.csr ./*.ext ca.srl
# ingest runs as distroless nonroot (65532) and must read its key and
# the token file; the CA key stays readable by root only.
chown 65532:65532 ingest.key ingest.crt ca.crt tokens.csv apiserver-client.crt apiserver-client.key
chmod 0400 ingest.key tokens.csv apiserver-client.key
chmod 0444 ingest.crt ca.crt apiserver-client.crt
echo "wrote CA, ingest and apiserver-client certificates and a token for cluster ${cluster} to /tls"
