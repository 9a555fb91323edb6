#!/usr/bin/env bash
# Regenerate the device plugin API's Python modules (deviceplugin_pb2*.py) from our .proto with
# grpcio-tools from the project's virtual environment. The generated files are committed; run
# this after editing src/kantaloupe/node/proto/deviceplugin.proto.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
py="${PYTHON:-$root/.venv/bin/python}"
proto="$root/src/kantaloupe/node/proto"
"$py" -m grpc_tools.protoc \
  --proto_path="$proto" \
  --python_out="$proto" --grpc_python_out="$proto" \
  "$proto/deviceplugin.proto"
# grpc_tools writes "import deviceplugin_pb2"; make it relative to the package.
sed -i 's/^import deviceplugin_pb2 as /from . import deviceplugin_pb2 as /' "$proto/deviceplugin_pb2_grpc.py"
echo "gen-proto.sh: wrote $(cd "$proto" && ls deviceplugin_pb2*.py*)" >&2
