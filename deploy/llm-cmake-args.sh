#!/bin/sh
# CMAKE_ARGS for building llama-cpp-python (ggml) for the CPU of this machine, from /proc/cpuinfo (or the file in $1).
#
# Not -march=native (GGML_NATIVE): that build enables AMX, and dies with SIGILL on machines whose kernel does not
# grant AMX to the process. Not a fixed list either: AVX_VNNI (the VEX form) exists on recent Intel CPUs but not on
# AMD Zen 4, where a build with it dies with SIGILL on the first matrix product. Each extension is switched on only
# when this CPU reports it; the build is then tied to this CPU kind (`make llm` rebuilds when the flags change).
flags=$(grep -m1 "^flags" "${1:-/proc/cpuinfo}" 2>/dev/null)
has() { case " $flags " in *" $1 "*) echo ON ;; *) echo OFF ;; esac; }
echo "-DGGML_NATIVE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_BF16=OFF" \
  "-DGGML_AVX=$(has avx) -DGGML_AVX2=$(has avx2) -DGGML_FMA=$(has fma) -DGGML_F16C=$(has f16c) -DGGML_BMI2=$(has bmi2)" \
  "-DGGML_AVX512=$(has avx512f) -DGGML_AVX512_VBMI=$(has avx512vbmi) -DGGML_AVX512_VNNI=$(has avx512_vnni)" \
  "-DGGML_AVX512_BF16=$(has avx512_bf16) -DGGML_AVX_VNNI=$(has avx_vnni)"
