/* llama-bench's generation loop (tg N), callable from Python, for bench/engine_overhead.py.
 *
 * Decodes n single tokens of sequence 0 from position pos0, waiting for each step
 * (llama_synchronize) and never reading the logits, as llama-bench's test_gen does; the next
 * token is a pseudo-random id, since decode time does not depend on it. Returns the seconds
 * taken, or -1 if a decode failed. Built at bench time against the llama.cpp library the
 * Python side uses, so that it runs in the same process and on the same thread as lmnb and
 * the comparison is free of the host's drift.
 *
 * The batch struct mirrors llama.h's llama_batch (no header ships with the wheel).
 */
#include <stdint.h>
#include <time.h>

typedef struct {
    int32_t n_tokens;
    int32_t *token;
    float *embd;
    int32_t *pos;
    int32_t *n_seq_id;
    int32_t **seq_id;
    int8_t *logits;
} batch_t;

extern int32_t llama_decode(void *ctx, batch_t batch);
extern void llama_synchronize(void *ctx);

double tg_loop(void *ctx, int32_t pos0, int32_t n, int32_t n_vocab) {
    int32_t token = 1, pos = pos0, n_seq = 1, seq = 0;
    int32_t *seq_ptr = &seq;
    int8_t output = 1;
    batch_t batch = {1, &token, 0, &pos, &n_seq, &seq_ptr, &output};
    uint32_t state = 12345u;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int32_t i = 0; i < n; i++) {
        pos = pos0 + i;
        if (llama_decode(ctx, batch) != 0) return -1.0;
        llama_synchronize(ctx);
        state = state * 1103515245u + 12345u;
        token = (int32_t)((state >> 8) % (uint32_t)n_vocab);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
}
