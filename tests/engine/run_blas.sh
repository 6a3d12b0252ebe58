#!/usr/bin/env bash
# Float GEMM kernels chosen from CPUID (engine/cpu.c): on a CPU with AVX2+FMA (AVX-512) a
# kernel class below it is never in use, also when OpenBLAS itself picks a generic core
# (simulated with QUANTD_BLAS_TEST_DETECTED, since no test machine is misdetected); a
# user's OPENBLAS_CORETYPE wins; under valgrind quantd does not re-execute itself away from
# it; a float model gives the same outputs whichever process made the choice.
# Prints "blas: N passed, N failed".
set -u
cd "$(dirname "$0")/../.."
B=${B:-build}
[ -x "$B/quantd" ] || make -s B="$B" "$B/quantd" >/dev/null || exit 1
Q=$B/quantd
pass=0; fail=0
ok() { echo "ok   $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1"; fail=$((fail + 1)); }
check() { if eval "$2"; then ok "$1"; else bad "$1"; fi; }

flags=" $(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2) "
has() { case "$flags" in *" $1 "*) return 0;; esac; return 1; }
want=0
if has avx2 && has fma; then want=2; fi
if has avx512f && has avx512dq && has avx512cd && has avx512bw && has avx512vl; then want=3; fi
class() {   # OpenBLAS core name -> 3 AVX-512, 2 AVX2, 1 AVX, 0 generic
	case "$1" in
	SkylakeX|Cooperlake|SapphireRapids) echo 3;; Haswell|Zen|Excavator) echo 2;;
	Sandybridge|Bulldozer|Piledriver|Steamroller) echo 1;; *) echo 0;;
	esac
}
core_of() { sed -n 's/^float gemm: .*, \([A-Za-z0-9_]*\) kernels.*/\1/p' <<<"$1"; }
echo "cpu flags class: $want ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2))"

out=$(env -u OPENBLAS_CORETYPE "$Q" version)
echo "$out"
core=$(core_of "$out")
check "quantd version names the float GEMM kernels ($core) and the integer ones" \
	'[ -n "$core" ] && grep -q "^integer gemm: quantd " <<<"$out"'
check "the kernels in use are of the CPU's class or better (class $(class "$core") >= $want)" \
	'[ "$(class "$core")" -ge "$want" ]'

out=$(env -u OPENBLAS_CORETYPE QUANTD_BLAS_TEST_DETECTED=Prescott "$Q" version)
core=$(core_of "$out")
if [ "$want" -ge 1 ]; then
	check "OpenBLAS picking Prescott: quantd re-chooses from CPUID ($core, class $(class "$core") >= $want)" \
		'[ "$(class "$core")" -ge "$want" ] && grep -q "chosen by quantd from CPUID; OpenBLAS.s own pick was Prescott" <<<"$out"'
else
	check "OpenBLAS picking Prescott on a CPU without AVX: nothing better to choose" \
		'grep -q "best class this CPU allows" <<<"$out"'
fi

out=$(OPENBLAS_CORETYPE=Prescott "$Q" version)
check "a user's OPENBLAS_CORETYPE wins (Prescott kept, said so)" \
	'[ "$(core_of "$out")" = Prescott ] && grep -q "OPENBLAS_CORETYPE=Prescott set by the user" <<<"$out"'

if command -v valgrind >/dev/null; then
	out=$(env -u OPENBLAS_CORETYPE QUANTD_BLAS_TEST_DETECTED=Prescott valgrind -q --log-file=/dev/null "$Q" version 2>&1)
	check "under valgrind quantd does not re-execute itself out of it" \
		'grep -q "^float gemm: " <<<"$out" && ! grep -q "chosen by quantd" <<<"$out"'
else
	bad "valgrind is not installed (scripts/install-deps.sh installs it)"
fi

# same outputs from a float Gemm model whether OpenBLAS or quantd chose the kernels
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
/usr/bin/python3 - "$work" <<'EOF'
import sys, numpy as np, onnx
from onnx import helper, TensorProto, numpy_helper
rng = np.random.default_rng(5)
w = numpy_helper.from_array(rng.standard_normal((256, 192)).astype(np.float32), "w")
g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "mm",
                      [helper.make_tensor_value_info("x", TensorProto.FLOAT, [64, 256])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, [64, 192])], [w])
m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
onnx.save(m, sys.argv[1] + "/mm.onnx")
np.savez(sys.argv[1] + "/x.npz", x=rng.standard_normal((64, 256)).astype(np.float32))
EOF
env -u OPENBLAS_CORETYPE "$Q" infer --model "$work/mm.onnx" --input "$work/x.npz" --output "$work/a.npz" >/dev/null 2>&1
ra=$?
env -u OPENBLAS_CORETYPE QUANTD_BLAS_TEST_DETECTED=Prescott "$Q" infer --model "$work/mm.onnx" --input "$work/x.npz" \
	--output "$work/b.npz" >/dev/null 2>&1
rb=$?
OPENBLAS_CORETYPE=Prescott "$Q" infer --model "$work/mm.onnx" --input "$work/x.npz" --output "$work/c.npz" >/dev/null 2>&1
rc=$?
res=$(/usr/bin/python3 - "$work" <<'EOF'
import sys, numpy as np
d = sys.argv[1]
try:
    a, b, c = (np.load("%s/%s.npz" % (d, n))["y"] for n in "abc")
    x = np.load(d + "/x.npz")["x"]
except Exception as e:
    print("error", e); sys.exit()
import onnx
from onnx import numpy_helper
w = numpy_helper.to_array(onnx.load(d + "/mm.onnx").graph.initializer[0])
ref = x.astype(np.float64) @ w.astype(np.float64)
print("%.3g %.3g %.3g" % tuple(float(np.max(np.abs(v - ref))) for v in (a, b, c)))
EOF
)
echo "max abs error vs float64 (own pick, re-chosen, Prescott): $res"
check "infer runs under each choice and every result is within 1e-4 of float64 (measured ~3e-5)" \
	'[ $ra -eq 0 ] && [ $rb -eq 0 ] && [ $rc -eq 0 ] && python3 -c "import sys; v=[float(t) for t in sys.argv[1:]]; sys.exit(not (len(v)==3 and max(v)<1e-4))" $res'

echo "blas: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
