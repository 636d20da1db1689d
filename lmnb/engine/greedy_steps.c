/* Several greedy steps of one sequence per call: lmnb's only compiled code (see native.py).
 *
 * A single stream's Python between two decodes (~0.1 ms: reading the row, the argmax, the text,
 * the loop) runs on caches that each decode has just filled with the weights, and on a small
 * model it costs 1-3% of llama.cpp's speed. This loop decodes, takes the argmax of the logits
 * and feeds the token back, until a token ends the reply, the caller's flag is set, the time
 * budget is spent or max_n tokens are out; Python then handles the tokens one by one as usual.
 *
 * llama.cpp is reached through the function pointers the caller passes (llama_cpp's own
 * bindings), so nothing links against it; the batch mirrors llama.h's llama_batch, and
 * greedy_steps_layout lets the caller check that it matches before any call.
 */
#include <stddef.h>
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

typedef int32_t (*decode_fn)(void *ctx, batch_t batch);
typedef float *(*logits_fn)(void *ctx, int32_t i);

/* sizeof and field offsets of batch_t, for the caller to compare with its own llama_batch */
void greedy_steps_layout(int64_t out[8]) {
    out[0] = (int64_t)sizeof(batch_t);
    out[1] = (int64_t)offsetof(batch_t, n_tokens);
    out[2] = (int64_t)offsetof(batch_t, token);
    out[3] = (int64_t)offsetof(batch_t, embd);
    out[4] = (int64_t)offsetof(batch_t, pos);
    out[5] = (int64_t)offsetof(batch_t, n_seq_id);
    out[6] = (int64_t)offsetof(batch_t, seq_id);
    out[7] = (int64_t)offsetof(batch_t, logits);
}

static int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* Decode `token` at `pos` of sequence `seq` (batch entry 0 of `b`, which has room for one), take
 * the argmax (the first maximum, as numpy's) and go on with it, writing each token to `out`.
 * Returns how many tokens were written; *rc is llama_decode's code if a decode failed (0 else). */
int32_t greedy_steps(decode_fn decode, logits_fn logits_ith, void *ctx, batch_t *b, int32_t token,
                     int32_t pos, int32_t seq, int32_t n_vocab, int32_t max_n, const uint8_t *is_eog,
                     int32_t *out, int64_t budget_ns, volatile const int32_t *interrupt, int32_t *rc) {
    const int64_t t0 = now_ns();
    int32_t n = 0;
    *rc = 0;
    while (n < max_n) {
        b->n_tokens = 1;
        b->token[0] = token;
        b->pos[0] = pos;
        b->n_seq_id[0] = 1;
        b->seq_id[0][0] = seq;
        b->logits[0] = 1;
        const int32_t r = decode(ctx, *b);
        if (r != 0) {
            *rc = r;
            break;
        }
        const float *row = logits_ith(ctx, 0);
        if (row == NULL) {
            *rc = -1;
            break;
        }
        int32_t best = 0;
        float top = row[0];
        for (int32_t i = 1; i < n_vocab; i++) {
            if (row[i] > top) {
                top = row[i];
                best = i;
            }
        }
        out[n++] = best;
        token = best;
        pos++;
        if (is_eog[best] || *interrupt || now_ns() - t0 >= budget_ns) break;
    }
    return n;
}
