// Plain C++ test bench for the exported classifier, built with Verilator (5.006 works).
//
// Usage: Vharness VECTORS OUT N PAYLOAD_BYTES LATENCY VALID_PROB READY_PROB SEED
//
//   VECTORS   N records of PAYLOAD_BYTES bytes: the i__payload of each image, little-endian
//             (for the byte-input design that is just the image's bytes in order).
//   OUT       written: N little-endian uint16, the class taken from o__payload per image, in
//             order (0xFFFF for an image whose class never came out).
//   LATENCY   the design's latency; at full rate (both probabilities 1) every class must come
//             out exactly LATENCY cycles after its image went in, and i__ready must never drop.
//   VALID_PROB, READY_PROB  per-cycle probability that the source offers an image / the sink
//             takes one; gaps and back-pressure must lose or duplicate nothing.
//
// Prints one line of JSON with the counts; exits 0 when the protocol checks passed (the Python
// runner compares the classes with the golden model), 1 on a protocol error, 2 on bad arguments.
#include "Vdut.h"
#include "verilated.h"

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

// Verilator escapes the double underscore of Amaranth's flattened port names.
#define I_PAYLOAD i___05Fpayload
#define I_VALID i___05Fvalid
#define I_READY i___05Fready
#define O_PAYLOAD o___05Fpayload
#define O_VALID o___05Fvalid
#define O_READY o___05Fready

// Narrow ports are plain integers...
template <typename T>
static void set_payload(T& port, const uint8_t* p, size_t nbytes) {
    uint64_t v = 0;
    for (size_t i = 0; i < nbytes && i < 8; ++i) v |= uint64_t(p[i]) << (8 * i);
    port = static_cast<T>(v);
}
// ...wide ones are arrays of 32-bit words.
template <std::size_t N>
static void set_payload(VlWide<N>& port, const uint8_t* p, size_t nbytes) {
    for (std::size_t w = 0; w < N; ++w) {
        uint32_t v = 0;
        for (size_t k = 0; k < 4; ++k) {
            size_t i = 4 * w + k;
            if (i < nbytes) v |= uint32_t(p[i]) << (8 * k);
        }
        port[w] = v;
    }
}

static uint64_t rng_state;
static double uniform() {  // splitmix64
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
    return (z >> 11) * (1.0 / 9007199254740992.0);
}

int main(int argc, char** argv) {
    if (argc != 9) {
        std::fprintf(stderr, "usage: %s VECTORS OUT N PAYLOAD_BYTES LATENCY VALID_PROB READY_PROB SEED\n", argv[0]);
        return 2;
    }
    const char* vec_path = argv[1];
    const char* out_path = argv[2];
    const size_t n = std::strtoull(argv[3], nullptr, 10);
    const size_t nbytes = std::strtoull(argv[4], nullptr, 10);
    const long latency = std::strtol(argv[5], nullptr, 10);
    const double valid_prob = std::atof(argv[6]);
    const double ready_prob = std::atof(argv[7]);
    rng_state = std::strtoull(argv[8], nullptr, 10);
    const bool full_rate = valid_prob >= 1.0 && ready_prob >= 1.0;

    std::vector<uint8_t> vec(n * nbytes);
    FILE* f = std::fopen(vec_path, "rb");
    if (!f || std::fread(vec.data(), 1, vec.size(), f) != vec.size()) {
        std::fprintf(stderr, "cannot read %zu records of %zu bytes from %s\n", n, nbytes, vec_path);
        return 2;
    }
    std::fclose(f);

    VerilatedContext ctx;
    Vdut* top = new Vdut{&ctx};
    std::vector<uint16_t> out(n, 0xFFFF);
    std::vector<uint64_t> in_cycle(n, 0);
    size_t sent = 0, got = 0, extra = 0, latency_errors = 0, refused = 0;
    uint64_t cycle = 0;

    auto step = [&]() {  // one rising edge
        top->clk = 1;
        top->eval();
        top->clk = 0;
        top->eval();
        ++cycle;
    };
    top->clk = 0;
    top->rst = 1;
    top->I_VALID = 0;
    top->O_READY = 0;
    top->eval();
    step();
    step();
    top->rst = 0;
    top->eval();
    cycle = 0;

    auto t0 = std::chrono::steady_clock::now();
    const uint64_t max_cycles = uint64_t((n + latency + 16) * 40 / (valid_prob < ready_prob ? (valid_prob > 0.05 ? valid_prob : 0.05)
                                                                                          : (ready_prob > 0.05 ? ready_prob : 0.05)));
    uint64_t drain = 0;
    while (cycle < max_cycles) {
        const bool offer = sent < n && (valid_prob >= 1.0 || uniform() < valid_prob);
        const bool take = got >= n ? true : (ready_prob >= 1.0 || uniform() < ready_prob);
        top->I_VALID = offer;
        if (offer) set_payload(top->I_PAYLOAD, &vec[sent * nbytes], nbytes);
        top->O_READY = take;
        top->eval();  // settle the combinational paths (i__ready depends on o__ready)
        const bool i_ready = top->I_READY;
        if (take && !i_ready && sent < n) ++refused;
        if (take && top->O_VALID) {
            if (got < n) {
                out[got] = static_cast<uint16_t>(top->O_PAYLOAD);
                if (full_rate && long(cycle - in_cycle[got]) != latency) ++latency_errors;
                ++got;
            } else {
                ++extra;  // more classes than images: a duplicate
            }
        }
        if (offer && i_ready) in_cycle[sent++] = cycle;
        if (got >= n && sent >= n && ++drain > uint64_t(latency) + 4) break;
        step();
    }
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

    f = std::fopen(out_path, "wb");
    if (!f || std::fwrite(out.data(), sizeof(uint16_t), n, f) != n) {
        std::fprintf(stderr, "cannot write %s\n", out_path);
        return 2;
    }
    std::fclose(f);
    std::printf("{\"images\": %zu, \"outputs\": %zu, \"extra\": %zu, \"cycles\": %llu, \"latency_errors\": %zu, "
                "\"refused\": %zu, \"seconds\": %.6f}\n",
                n, got, extra, (unsigned long long)cycle, latency_errors, full_rate ? refused : 0, secs);
    top->final();
    delete top;
    const bool ok = got == n && extra == 0 && latency_errors == 0 && (!full_rate || refused == 0);
    return ok ? 0 : 1;
}
