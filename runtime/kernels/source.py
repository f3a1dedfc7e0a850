"""CUDA C source of the exit-table kernels, generated from the constants in ``runtime.keys``.

One source for the hash (``mix64``, n-gram keys) and the table (Fibonacci home slot, linear probing,
round-synchronous insert, ``atomicAdd`` counts, lookup). An insert round is two launches: ``insert_probe`` reads
the table (no writes to it: a snapshot) and marks keys that found an empty slot; ``insert_claim`` lets each of
them ``atomicMin`` its key into that slot, which was empty, so the smallest claimant is what the slot holds
afterwards. No claim array is needed, and unfinished keys raise one "pending" flag with a plain store (every
writer stores the same value) instead of all bumping one atomic counter. The
NumPy twin (``runtime/keys.py``, ``runtime/exit_table.py``) implements the same specification; the tests compare
the two bit for bit where a GPU is present.
"""

from __future__ import annotations

from runtime.keys import EMPTY_KEY, GOLDEN, M1, M2

KERNEL_NAMES = (
    "ngram_keys", "table_lookup", "insert_init", "insert_probe", "insert_claim", "accumulate_counts",
)

_DEFINES = f"""
typedef unsigned long long u64;
#define EMPTY_KEY 0x{EMPTY_KEY:016x}ull
#define GOLDEN 0x{GOLDEN:016x}ull
#define M1 0x{M1:016x}ull
#define M2 0x{M2:016x}ull
"""

_BODY = r"""
__device__ __forceinline__ u64 mix64(u64 z) {
    z ^= z >> 30; z *= M1;
    z ^= z >> 27; z *= M2;
    z ^= z >> 31;
    return z;
}

__device__ __forceinline__ long long home_slot(u64 key, int shift) {
    return (long long)((key * GOLDEN) >> shift);
}

/* out[(b*S + i)*n_orders + j] = key of the `order`-gram starting at (b, i), EMPTY_KEY if none. */
extern "C" __global__ void ngram_keys(const long long* ids, const long long* mask, long long B, int S,
                                      const long long* specials, int n_specials, int order, u64 h0,
                                      int n_orders, int j, u64* out) {
    long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= B * S) return;
    long long b = t / S; int i = (int)(t % S);
    u64 h = h0;
    bool ok = i + order <= S;
    for (int o = 0; ok && o < order; ++o) {
        long long idx = b * S + i + o;
        long long tok = ids[idx];
        if (mask[idx] == 0) { ok = false; break; }
        for (int s = 0; s < n_specials; ++s) if (tok == specials[s]) ok = false;
        h = mix64(h ^ ((u64)tok + GOLDEN));
    }
    if (h == EMPTY_KEY) h = EMPTY_KEY - 1ull;
    out[t * n_orders + j] = ok ? h : EMPTY_KEY;
}

/* slot of each query key, -1 if absent (EMPTY_KEY queries are misses). */
extern "C" __global__ void table_lookup(const u64* tkeys, long long capacity, int shift,
                                        const u64* q, long long n, long long* out) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    u64 key = q[i];
    long long res = -1;
    if (key != EMPTY_KEY) {
        long long p = home_slot(key, shift);
        for (long long step = 0; step < capacity; ++step) {
            u64 k = tkeys[p];
            if (k == key) { res = p; break; }
            if (k == EMPTY_KEY) break;
            p = (p + 1) & (capacity - 1);
        }
    }
    out[i] = res;
}

extern "C" __global__ void insert_init(const u64* keys, long long n, int shift, long long* pos, int* state) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    pos[i] = home_slot(keys[i], shift);
    state[i] = 0;
}

/* Round, phase 1 (reads the table only): own key -> done; other key -> advance; empty -> claim it in phase 2. */
extern "C" __global__ void insert_probe(const u64* tkeys, long long capacity, const u64* keys, long long* pos,
                                        int* state, long long n, unsigned int* pending) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n || state[i] == 2) return;
    long long p = pos[i];
    u64 k = tkeys[p];
    if (k == keys[i]) { state[i] = 2; return; }
    if (k == EMPTY_KEY) state[i] = 1;
    else { pos[i] = (p + 1) & (capacity - 1); state[i] = 0; }
    *pending = 1u;
}

/* Round, phase 2: claimants of a slot that was empty in phase 1 write min(claimants) into it (EMPTY_KEY is the
   largest u64, so the first atomicMin always takes the slot); losers see the winner in the next probe. */
extern "C" __global__ void insert_claim(u64* tkeys, const u64* keys, const long long* pos, const int* state,
                                        long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n || state[i] != 1) return;
    atomicMin(&tkeys[pos[i]], keys[i]);
}

extern "C" __global__ void accumulate_counts(unsigned int* counts, int L, const long long* pos,
                                             const long long* exits, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    atomicAdd(&counts[pos[i] * L + (exits[i] - 1)], 1u);
}
"""

SOURCE = _DEFINES + _BODY
