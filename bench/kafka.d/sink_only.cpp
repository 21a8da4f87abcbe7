// The Kafka sink alone, without PostgreSQL (bench/kafka.d/sink_only.sh): requests of BATCH events
// (records built as the dispatcher builds them, about 300 bytes of JSON each), at most IN_FLIGHT
// at once, driven as the worker's loop drives the sink (poll(2) on wait_fds(), on_socket /
// on_timeout). Prints one JSON line: events, seconds, cpu_s (this process: the records, the sink
// and librdkafka's threads).
//
//   sink_only BOOTSTRAP TOPIC EVENTS BATCH IN_FLIGHT [SETTINGS]
//
// SETTINGS: the endpoint's kafka_settings as a JSON object (default none).
#include "core/kafka_records.hpp"
#include "core/kafka_sink.hpp"

#include <poll.h>
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

using namespace pg_sync;

int main(int argc, char **argv) {
    if (argc != 6 && argc != 7) {
        std::fprintf(stderr, "usage: sink_only BOOTSTRAP TOPIC EVENTS BATCH IN_FLIGHT [SETTINGS]\n");
        return 2;
    }
    const std::string url = std::string("kafka://") + argv[1] + "/" + argv[2];
    const int total = std::atoi(argv[3]), batch = std::atoi(argv[4]), in_flight = std::atoi(argv[5]);
    std::vector<std::string> keys(total), rows(total);
    for (int i = 0; i < total; ++i) {
        keys[i] = "{\"id\":" + std::to_string(i + 1) + "}";
        rows[i] = "{\"id\":" + std::to_string(i + 1) + ",\"customer_id\":" + std::to_string(i % 1000) +
                  ",\"status\":\"new\",\"amount\":12.34,\"created_at\":\"2026-01-01T00:00:00+00:00\",\"note\":\"order note " +
                  std::to_string(i + 1) + "\"}";
    }
    kafka::Sink sink({});
    int next = 0, done = 0, out = 0;
    std::uint64_t token = 1;
    const auto t0 = std::chrono::steady_clock::now();
    while (done < total) {
        for (const sink::Completion &c : sink.take_completions()) {
            if (c.transport != retry::Transport::Delivered) {
                std::fprintf(stderr, "request failed: %s\n", c.detail.c_str());
                return 1;
            }
            --out;
            done += batch;
        }
        while (out < in_flight && next < total) {
            std::vector<envelope::EventView> views;
            for (int k = 0; k < batch && next < total; ++k, ++next) {
                envelope::EventView v;
                v.id = next + 1;
                v.op = "insert";
                v.table = std::string_view("public.orders");
                v.key = std::string_view(keys[next]);
                v.new_row = std::string_view(rows[next]);
                v.txid = 777;
                v.captured_at = "2026-11-23T10:15:02.123456Z";
                views.push_back(v);
            }
            sink::Request r;
            r.token = token++;
            r.url = url;
            r.timeout_ms = 60000;
            if (argc == 7)
                r.settings = argv[6];
            kafka::build_records(views, r.records);
            sink.submit(std::move(r));
            ++out;
        }
        if (done >= total)
            break;
        std::vector<pollfd> fds;
        for (const auto &kv : sink.wait_fds())
            fds.push_back({kv.first, POLLIN, 0});
        const long t = sink.timeout_ms();
        if (poll(fds.data(), fds.size(), t < 0 ? 1000 : int(t)) > 0)
            sink.on_socket(fds[0].fd, sink::kWantRead);
        else if (sink.timeout_ms() == 0)
            sink.on_timeout();
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    const double cpu = double(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + double(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
    std::printf("{\"events\": %d, \"batch\": %d, \"in_flight\": %d, \"seconds\": %.3f, \"events_per_s\": %.0f, \"cpu_s\": %.2f}\n",
                total, batch, in_flight, seconds, total / seconds, cpu);
    return 0;
}
