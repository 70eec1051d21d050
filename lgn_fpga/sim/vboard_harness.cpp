// lgn-fpga virtual board harness: drives the UART pins of a Verilated top level (built as Vdut).
// Commands on stdin, little-endian:
//   'M' u32 offsets[10]        the monitor's sample points: cycles after a start edge of each bit
//   'L' u32 n, n x (u8 level, u32 cycles)
//                              queue runs of line levels on rx
//   'R' u32 want, u64 max_cycles
//                              run until `want` bytes came out of tx or max_cycles passed;
//                              answer u32 n, n bytes, u64 total cycles
//   'Q'                        quit
// The line arithmetic (bit edges, sample points) is lgn_fpga/sim/uart_line.py's: Python turns bytes and
// breaks into level runs and gives the monitor's offsets; this file only plays and samples them.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <vector>
#include <unistd.h>
#include "Vdut.h"
#include "verilated.h"

static Vdut *dut;
struct Run { int level; uint64_t n; };
static std::deque<Run> runs;
static uint64_t cycles = 0;
static std::vector<uint8_t> out;
static uint32_t offsets[10] = {0};
static int64_t mon_t = -1; static int mon_k = 0; static unsigned mon_bits = 0;

static void monitor(int level) {
    if (mon_t < 0) { if (level == 0) { mon_t = 0; mon_k = 0; mon_bits = 0; } return; }
    mon_t++;
    if (mon_t == (int64_t)offsets[mon_k]) {
        if (mon_k >= 1 && mon_k <= 8) mon_bits |= (unsigned)level << (mon_k - 1);
        if (++mon_k == 10) { mon_t = -1; out.push_back((uint8_t)mon_bits); }
    }
}

static void step() {
    int level = 1;
    if (!runs.empty()) { level = runs.front().level; if (--runs.front().n == 0) runs.pop_front(); }
    dut->rx = level;
    dut->clk = 0; dut->eval();
    dut->clk = 1; dut->eval();
    cycles++;
    monitor(dut->tx);
}

static void rd(void *p, size_t n) {
    uint8_t *b = (uint8_t *)p;
    while (n) { ssize_t r = read(0, b, n); if (r <= 0) exit(0); b += r; n -= (size_t)r; }
}
static void wr(const void *p, size_t n) { if (fwrite(p, 1, n, stdout) != n) exit(1); }

int main(int argc, char **argv) {
    Verilated::commandArgs(argc, argv);
    dut = new Vdut;
    dut->rx = 1; dut->rst = 1;
    for (int i = 0; i < 4; i++) { dut->clk = 0; dut->eval(); dut->clk = 1; dut->eval(); }
    dut->rst = 0;
    for (;;) {
        uint8_t cmd; rd(&cmd, 1);
        if (cmd == 'M') {
            rd(offsets, sizeof offsets);
        } else if (cmd == 'L') {
            uint32_t n; rd(&n, 4);
            for (uint32_t i = 0; i < n; i++) {
                uint8_t level; uint32_t c; rd(&level, 1); rd(&c, 4);
                if (c) runs.push_back({level ? 1 : 0, c});
            }
        } else if (cmd == 'R') {
            uint32_t want; uint64_t maxc; rd(&want, 4); rd(&maxc, 8);
            uint64_t end = cycles + maxc;
            while (cycles < end && out.size() < want) step();
            uint32_t n = (uint32_t)out.size();
            wr(&n, 4); if (n) wr(out.data(), n); wr(&cycles, 8); fflush(stdout);
            out.clear();
        } else if (cmd == 'Q') {
            break;
        } else {
            fprintf(stderr, "vboard: unknown command %d\n", cmd); return 2;
        }
    }
    delete dut;
    return 0;
}
