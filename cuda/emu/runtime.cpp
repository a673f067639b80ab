// The launch loop of the CUDA emulation (see cuda_emu.h): blockDim.x OS threads, each
// playing one threadIdx.x, run the grid's blocks in order. __syncthreads() waits for every
// thread of the block still running it (a thread that returned counts as arrived, as on a
// GPU); a second barrier ends each block, so no thread starts the next block while another
// still reads this one's shared memory.
#include "cuda_emu.h"

#include <atomic>
#include <mutex>
#include <thread>
#include <vector>

thread_local dim3 threadIdx;
thread_local dim3 blockIdx;
dim3 blockDim;
dim3 gridDim;

namespace {

// A reusable barrier over `active` threads; leave() takes a finished thread out of the count,
// and the last one to leave restores the full count for the next block.
class Barrier {
public:
    void reset(unsigned int n) {
        std::lock_guard<std::mutex> l(m_);
        full_ = active_ = n;
        arrived_ = 0;
    }
    void sync() {
        std::unique_lock<std::mutex> l(m_);
        unsigned int gen = gen_.load();
        if (++arrived_ == active_) {
            release();
            return;
        }
        l.unlock();
        // Waiters sleep on the generation word, not the mutex, so a release wakes them all
        // at once instead of handing the mutex from one to the next.
        while (gen_.load() == gen) gen_.wait(gen);
    }
    void leave() {
        std::lock_guard<std::mutex> l(m_);
        if (--active_ == 0) {
            active_ = full_;
        } else if (arrived_ > 0 && arrived_ == active_) {
            release();
        }
    }

private:
    void release() {
        arrived_ = 0;
        gen_.fetch_add(1);
        gen_.notify_all();
    }
    std::mutex m_;
    unsigned int full_ = 0, active_ = 0, arrived_ = 0;
    // 4 bytes: libstdc++ waits on such a word with a futex directly (wrap-around is harmless).
    std::atomic<unsigned int> gen_{0};
};

Barrier block_sync;  // __syncthreads within a block
Barrier block_end;   // all threads done with a block

}  // namespace

void pgpo_emu_syncthreads() { block_sync.sync(); }

extern "C" void pgpo_emu_launch(void (*kernel)(void**), void** args, unsigned int gx, unsigned int gy, unsigned int gz,
                                unsigned int threads) {
    gridDim = dim3{gx, gy, gz};
    blockDim = dim3{threads, 1, 1};
    block_end.reset(threads);
    block_sync.reset(threads);
    std::vector<std::thread> team;
    team.reserve(threads);
    for (unsigned int t = 0; t < threads; t++) {
        team.emplace_back([=] {
            threadIdx = dim3{t, 0, 0};
            for (unsigned int z = 0; z < gz; z++) {
                for (unsigned int y = 0; y < gy; y++) {
                    for (unsigned int x = 0; x < gx; x++) {
                        blockIdx = dim3{x, y, z};
                        kernel(args);
                        block_sync.leave();
                        block_end.sync();
                    }
                }
            }
        });
    }
    for (auto& th : team) th.join();
}
