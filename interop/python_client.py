#!/usr/bin/env python3
"""A zhibao client that is not ours: Python grpcio (BoringSSL) and
`cryptography`, talking to a running hub.

It writes a report in Python, signs its exact protobuf bytes with a county's
Ed25519 key, delivers it over mutual TLS, checks the hub's signed receipt,
then checks that a flipped byte and a spoofed origin are refused with the
right gRPC codes.

    pip install grpcio grpcio-tools cryptography
    zhibao certs init --dir certs --hub hub --nodes county-a
    zhibao serve --config config/hub.toml &
    python3 interop/python_client.py --certs certs --hub 127.0.0.1:7400
"""

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import time

import grpc
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, load_pem_private_key

here = os.path.dirname(os.path.abspath(__file__))
out = tempfile.mkdtemp()
subprocess.run(
    [sys.executable, "-m", "grpc_tools.protoc", f"-I{here}/../proto", f"--python_out={out}",
     f"--grpc_python_out={out}", "zhibao/v1/zhibao.proto"],
    check=True,
)
sys.path.insert(0, out)
from zhibao.v1 import zhibao_pb2 as pb, zhibao_pb2_grpc as rpc  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--certs", default="certs")
ap.add_argument("--hub", default="127.0.0.1:7400")
ap.add_argument("--node", default="county-a")
args = ap.parse_args()

read = lambda name: open(os.path.join(args.certs, name), "rb").read()
ca, cert_pem, key_pem = read("ca.pem"), read(f"{args.node}.pem"), read(f"{args.node}.key")
key = load_pem_private_key(key_pem, password=None)
cert_der = x509.load_pem_x509_certificate(cert_pem).public_bytes(Encoding.DER)

creds = grpc.ssl_channel_credentials(root_certificates=ca, private_key=key_pem, certificate_chain=cert_pem)
channel = grpc.secure_channel(args.hub, creds, options=[("grpc.ssl_target_name_override", "localhost")])
relay = rpc.RelayStub(channel)


def report(origin):
    now = int(time.time() * 1000)
    return pb.Report(
        id=f"{now:012x}" + os.urandom(10).hex(), origin=origin, priority=pb.PRIORITY_EMERGENCY,
        title="flood from python", body=b"the river road is under water",
        created_unix_ms=now, deadline_unix_ms=now + 60_000,
    )


def sealed(r):
    data = r.SerializeToString()
    return pb.SignedReport(report=data, signature=key.sign(data), signer_cert=cert_der)


item = sealed(report(args.node))
signed = relay.Deliver(item, timeout=10)
receipt = pb.Receipt.FromString(signed.receipt)
assert receipt.item_id == pb.Report.FromString(item.report).id
assert receipt.report_sha256 == hashlib.sha256(item.report).digest()
signer = x509.load_der_x509_certificate(signed.signer_cert)
signer.public_key().verify(signed.signature, signed.receipt)  # raises if invalid
print(f"delivered {receipt.item_id}: receipt from {receipt.receiver}, signature valid, on_time={receipt.on_time}")

again = relay.Deliver(item, timeout=10)
assert again == signed, "a duplicate gets the original receipt back"
print("duplicate: the original receipt, byte for byte")

flipped = sealed(report(args.node))
flipped.report = flipped.report[:-1] + bytes([flipped.report[-1] ^ 1])
for name, bad, want in [
    ("flipped byte", flipped, grpc.StatusCode.UNAUTHENTICATED),
    ("spoofed origin", sealed(report("county-z")), grpc.StatusCode.PERMISSION_DENIED),
]:
    try:
        relay.Deliver(bad, timeout=10)
        sys.exit(f"{name}: accepted!")
    except grpc.RpcError as e:
        assert e.code() == want, (name, e.code(), e.details())
        print(f"{name}: refused with {e.code().name}: {e.details()}")
print("ok")
