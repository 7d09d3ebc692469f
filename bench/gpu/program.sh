# Sourced by the GPU scripts: sets $bin to the sparsedecode program and the CUDA library path. The program is a
# self-contained single-file publish (no .NET needed where it runs): $SPARSEDECODE_BIN, else
# publish/gpu/sparsedecode(.xz or .gz), else built here with dotnet. Needs $root (the repository).
bin=${SPARSEDECODE_BIN:-$root/publish/gpu/sparsedecode}
if [ ! -x "$bin" ] && [ -f "$bin.xz" ]; then
  mkdir -p /tmp/sparsedecode-gpu
  python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$bin.xz" /tmp/sparsedecode-gpu/sparsedecode
  chmod +x /tmp/sparsedecode-gpu/sparsedecode
  bin=/tmp/sparsedecode-gpu/sparsedecode
elif [ ! -x "$bin" ] && [ -f "$bin.gz" ]; then
  mkdir -p /tmp/sparsedecode-gpu && gunzip -c "$bin.gz" > /tmp/sparsedecode-gpu/sparsedecode && chmod +x /tmp/sparsedecode-gpu/sparsedecode
  bin=/tmp/sparsedecode-gpu/sparsedecode
fi
if [ ! -x "$bin" ]; then
  command -v dotnet >/dev/null || { echo "error: no program at $bin and no dotnet to publish one" >&2; exit 1; }
  dotnet publish "$root/src/SparseDecode.Cli" -c Release -r linux-x64 --self-contained -p:PublishTrimmed=true \
    -p:PublishSingleFile=true -o "$root/out/gpu-publish" || exit 1
  mkdir -p "$(dirname "$bin")" && cp "$root/out/gpu-publish/sparsedecode" "$bin"
fi
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
