import COpenBLAS

/// Row-major single-precision matrix multiply through OpenBLAS:
/// `C[m, n] = alpha * op(A)[m, k] * op(B)[k, n] + beta * C[m, n]`.
///
/// `op(A)` is `A` (stored `[m, k]`, leading dimension `lda`) or, with `transposeA`, `A^T`
/// (stored `[k, m]`). Likewise for `B`. This is the only file that talks to BLAS.
@inline(__always)
public func gemm(
    transposeA: Bool, transposeB: Bool,
    m: Int, n: Int, k: Int,
    alpha: Float = 1,
    a: UnsafePointer<Float>, lda: Int,
    b: UnsafePointer<Float>, ldb: Int,
    beta: Float,
    c: UnsafeMutablePointer<Float>, ldc: Int
) {
    if m == 0 || n == 0 { return }
    cblas_sgemm(
        CblasRowMajor,
        transposeA ? CblasTrans : CblasNoTrans,
        transposeB ? CblasTrans : CblasNoTrans,
        blasint(m), blasint(n), blasint(k),
        alpha, a, blasint(lda), b, blasint(ldb),
        beta, c, blasint(ldc))
}

/// `count` independent products `C[i] = op(A[i]) * op(B[i])` (beta 0). `A[i]` starts `aStride`
/// floats after `A[i - 1]`, by default its stored size (`(transposeA ? k : m) * lda`, the
/// matrices one after another), likewise `B[i]` and `C[i]` (default `m * ldc`).
@inline(__always)
public func gemmEach(
    count: Int, transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int,
    a: UnsafePointer<Float>, lda: Int, aStride: Int? = nil, b: UnsafePointer<Float>, ldb: Int, bStride: Int? = nil,
    c: UnsafeMutablePointer<Float>, ldc: Int, cStride: Int? = nil
) {
    let aStride = aStride ?? (transposeA ? k : m) * lda, bStride = bStride ?? (transposeB ? n : k) * ldb
    let cStride = cStride ?? m * ldc
    for i in 0..<count {
        gemm(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k,
             a: a + i * aStride, lda: lda, b: b + i * bStride, ldb: ldb, beta: 0, c: c + i * cStride, ldc: ldc)
    }
}

/// Threads OpenBLAS may use inside one call. Ranks default to one thread each.
public func setBLASThreads(_ count: Int) {
    openblas_set_num_threads(Int32(count))
}

/// OpenBLAS's own description of its build and the kernel it selected (e.g. "... SkylakeX ...").
public func blasConfiguration() -> String {
    guard let config = openblas_get_config() else { return "unknown" }
    return String(cString: config)
}

/// The kernel family OpenBLAS selected at load time (e.g. "SkylakeX", "Haswell").
public func blasCoreName() -> String {
    guard let name = openblas_get_corename() else { return "unknown" }
    return String(cString: name)
}
