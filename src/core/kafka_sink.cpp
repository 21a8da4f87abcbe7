// Kafka as a sink::Sink over librdkafka; see kafka_sink.hpp.
#include "core/kafka_sink.hpp"

#include "core/http_client.hpp" // address_is_public
#include "core/kafka_config.hpp"

#include <librdkafka/rdkafka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <exception>
#include <stdexcept>

namespace pg_sync::kafka {
namespace {

std::int64_t steady_us() {
    return std::chrono::duration_cast<std::chrono::microseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}
std::int64_t steady_ms() { return steady_us() / 1000; }

// Printable ASCII only, bounded: error texts go into a text column as they are.
std::string printable(const char *s, std::size_t max = 200) {
    std::string out;
    for (; s && *s && out.size() < max; ++s)
        out += (*s >= 0x20 && *s < 0x7f) ? *s : ' ';
    return out;
}

enum class Slot : std::uint8_t { Waiting, Ready, InFlight, Written, Failed, Rejected };

// A success report without the record's offset (see acknowledged_at_offset): a transient failure
// (transport_of: Other), so that the record goes again.
constexpr int kNotAtOffset = RD_KAFKA_RESP_ERR__INCONSISTENT;
constexpr const char *kNotAtOffsetDetail =
    "acknowledged without an offset (librdkafka inferred it from a later batch): sent again";

} // namespace

bool acknowledged_at_offset(int kafka_error, int status, std::int64_t offset) noexcept {
    return kafka_error == RD_KAFKA_RESP_ERR_NO_ERROR && status == RD_KAFKA_MSG_STATUS_PERSISTED && offset >= 0;
}

retry::Transport transport_of(int kafka_error) noexcept {
    switch (static_cast<rd_kafka_resp_err_t>(kafka_error)) {
    case RD_KAFKA_RESP_ERR_NO_ERROR:
        return retry::Transport::Delivered;
    // Refused for good: the same record would be refused again.
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_RECORD:
    case RD_KAFKA_RESP_ERR_INVALID_MSG:
    case RD_KAFKA_RESP_ERR_UNSUPPORTED_FOR_MESSAGE_FORMAT:
    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
    case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
    case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
        return retry::Transport::Rejected;
    case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT:
    case RD_KAFKA_RESP_ERR__TIMED_OUT:
    case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
        return retry::Transport::Timeout;
    case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
        return retry::Transport::Connect;
    case RD_KAFKA_RESP_ERR__TRANSPORT:
        return retry::Transport::ConnectionLost;
    case RD_KAFKA_RESP_ERR__RESOLVE:
        return retry::Transport::Dns;
    case RD_KAFKA_RESP_ERR__SSL:
        return retry::Transport::Tls;
    default:
        return retry::Transport::Other;
    }
}

struct Sink::Producer {
    Sink *sink = nullptr;
    rd_kafka_t *rk = nullptr;
    rd_kafka_topic_t *rkt = nullptr;
    std::string identity;
    std::atomic<bool> allow_private{true}; // read by librdkafka's threads (connect callback)
    std::atomic<int> refused{0};           // connections refused by allow_private_targets
    std::size_t records = 0;               // produced, no report yet
    std::size_t requests = 0;              // Pending requests using it
    std::int64_t last_used_ms = 0;
    std::string last_error; // the last error librdkafka reported for the whole producer
    // Replace it for new requests: an idempotence failure made it unusable (fatal), or it keeps a
    // topic-level refusal (unknown topic, not authorized) that a redelivery must not meet again
    // before its metadata is refreshed.
    bool replace = false;
};

struct Sink::Pending {
    struct Record {
        Pending *owner = nullptr; // the report's opaque points here
        std::uint32_t index = 0;
        Slot state = Slot::Waiting;
        std::uint32_t waiting = 0; // records of `after` not yet written
        int error = 0;
    };
    sink::Request request;
    Producer *producer = nullptr;
    std::int64_t started_us = 0;
    std::vector<Record> records;
    std::vector<std::vector<std::uint32_t>> dependents;
    std::vector<std::uint32_t> ready; // may be produced (waiting for room in the producer's queue)
    std::size_t in_flight = 0;
    int first_error = 0;
    std::string first_detail;
    bool queue_full = false;
};

namespace {

// librdkafka's callbacks are C frames: nothing may throw through them.

// Called from librdkafka's broker threads: libc and this producer's atomics only.
int on_connect(int fd, const sockaddr *address, int length, const char *, void *opaque) noexcept {
    auto *p = static_cast<Sink::Producer *>(opaque);
    if (!p->allow_private.load(std::memory_order_relaxed) &&
        !http::address_is_public(address, socklen_t(length))) {
        p->refused.fetch_add(1, std::memory_order_relaxed);
        return EACCES;
    }
    if (connect(fd, address, socklen_t(length)) == -1 && errno != EINPROGRESS)
        return errno;
    return 0;
}

// Called from librdkafka's threads; the errors that matter come through on_error.
void on_log(const rd_kafka_t *, int, const char *, const char *) noexcept {}

std::exception_ptr callback_failure; // a C++ exception caught in a callback, rethrown after the poll

// Served by rd_kafka_poll() on the caller's thread.
void on_error(rd_kafka_t *, int error, const char *reason, void *opaque) noexcept {
    auto *p = static_cast<Sink::Producer *>(opaque);
    try {
        p->last_error = printable(reason);
        if (error == RD_KAFKA_RESP_ERR__FATAL)
            p->replace = true;
    } catch (...) {
        callback_failure = std::current_exception();
    }
}

void on_delivery(rd_kafka_t *, const rd_kafka_message_t *message, void *opaque) noexcept {
    auto *p = static_cast<Sink::Producer *>(opaque);
    auto *record = static_cast<Sink::Pending::Record *>(message->_private);
    if (p->records > 0)
        p->records--;
    int error = message->err;
    const char *detail = nullptr;
    if (error == RD_KAFKA_RESP_ERR_NO_ERROR &&
        !acknowledged_at_offset(message->err, rd_kafka_message_status(message), message->offset)) {
        error = kNotAtOffset;
        detail = kNotAtOffsetDetail;
    }
    try {
        p->sink->on_report(*record->owner, record->index, error, detail);
    } catch (...) {
        callback_failure = std::current_exception();
    }
}

void set(rd_kafka_conf_t *conf, const std::string &name, const std::string &value) {
    char error[512];
    if (rd_kafka_conf_set(conf, name.c_str(), value.c_str(), error, sizeof error) != RD_KAFKA_CONF_OK)
        throw std::invalid_argument("kafka setting " + name + ": " + printable(error));
}

void destroy_producer(Sink::Producer &p) {
    if (p.rkt)
        rd_kafka_topic_destroy(p.rkt);
    if (p.rk) {
        rd_kafka_purge(p.rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT | RD_KAFKA_PURGE_F_NON_BLOCKING);
        rd_kafka_destroy(p.rk);
    }
    p.rkt = nullptr;
    p.rk = nullptr;
}

} // namespace

Sink::Sink(const Options &options) : options_(options) {}

Sink::~Sink() {
    // Producers first: no report may arrive for a request freed below.
    for (auto &kv : producers_)
        destroy_producer(*kv.second);
    for (auto &p : retired_)
        destroy_producer(*p);
    if (wake_[0] >= 0)
        close(wake_[0]);
    if (wake_[1] >= 0)
        close(wake_[1]);
}

void Sink::open_wake_pipe() {
    if (wake_[0] >= 0)
        return;
    // Non-blocking on both ends: librdkafka's threads must never block writing a wake-up.
    if (pipe2(wake_, O_NONBLOCK | O_CLOEXEC) != 0)
        throw std::runtime_error("kafka sink: pipe2 failed");
    fds_[wake_[0]] = sink::kWantRead;
    fds_changed_ = fds_replaced_ = true;
}

bool Sink::wait_fds_changed() {
    const bool c = fds_changed_;
    fds_changed_ = false;
    return c;
}

bool Sink::wait_fds_replaced() {
    const bool c = fds_replaced_;
    fds_replaced_ = false;
    return c;
}

void Sink::set_options(const Options &options) {
    const bool tightened = options_.allow_private_targets && !options.allow_private_targets;
    options_ = options;
    for (auto &kv : producers_)
        kv.second->allow_private.store(options.allow_private_targets);
    for (auto &p : retired_)
        p->allow_private.store(options.allow_private_targets);
    if (tightened) {
        // Connections opened under the old setting must not carry new records.
        for (auto &kv : producers_)
            retired_.push_back(std::move(kv.second));
        producers_.clear();
    }
}

Sink::Producer *Sink::producer_for(const sink::Request &request, std::string *error) {
    const std::string identity =
        request.url + '\x1f' + request.settings + '\x1f' + std::to_string(request.timeout_ms);
    auto it = producers_.find(identity);
    if (it != producers_.end()) {
        if (!it->second->replace)
            return it->second.get();
        retired_.push_back(std::move(it->second));
        producers_.erase(it);
    }
    std::string problem, detail;
    const std::optional<Target> target = parse_url(request.url, &problem, &detail);
    if (!target) {
        *error = problem;
        return nullptr;
    }
    Settings settings;
    if (!request.settings.empty()) {
        std::optional<Settings> parsed = parse_settings(request.settings, &problem);
        if (!parsed) {
            *error = problem;
            return nullptr;
        }
        settings = std::move(*parsed);
    }
    open_wake_pipe();
    auto p = std::make_unique<Producer>();
    p->sink = this;
    p->identity = identity;
    p->allow_private.store(options_.allow_private_targets);
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    try {
        for (const auto &kv : default_settings(options_.client_id))
            set(conf, kv.first, kv.second);
        for (const auto &kv : settings)
            set(conf, kv.first, kv.second);
        set(conf, "bootstrap.servers", target->bootstrap());
        for (const auto &kv : fixed_settings(request.timeout_ms))
            set(conf, kv.first, kv.second);
    } catch (const std::invalid_argument &e) {
        rd_kafka_conf_destroy(conf);
        *error = e.what();
        return nullptr;
    }
    rd_kafka_conf_set_opaque(conf, p.get());
    rd_kafka_conf_set_dr_msg_cb(conf, &on_delivery);
    rd_kafka_conf_set_error_cb(conf, &on_error);
    rd_kafka_conf_set_log_cb(conf, &on_log);
    rd_kafka_conf_set_connect_cb(conf, &on_connect);

    // librdkafka's threads inherit this thread's signal mask: block everything while they start.
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    char errstr[512] = {0};
    p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    if (!p->rk) {
        rd_kafka_conf_destroy(conf); // (rd_kafka_new takes it only on success)
        *error = "could not create a Kafka producer: " + printable(errstr);
        return nullptr;
    }
    p->rkt = rd_kafka_topic_new(p->rk, target->topic.c_str(), nullptr);
    if (!p->rkt) {
        destroy_producer(*p);
        *error = "could not create a Kafka topic handle: " + printable(rd_kafka_err2str(rd_kafka_last_error()));
        return nullptr;
    }
    rd_kafka_queue_t *queue = rd_kafka_queue_get_main(p->rk);
    rd_kafka_queue_io_event_enable(queue, wake_[1], "k", 1);
    rd_kafka_queue_destroy(queue);
    // The queue signals only when it goes from empty to not empty: serve what librdkafka's threads
    // put there before the signal was set up (connection errors), or nothing would wake us again.
    rd_kafka_poll(p->rk, 0);
    Producer *raw = p.get();
    producers_.emplace(identity, std::move(p));
    return raw;
}

void Sink::submit(sink::Request request) {
    auto p = std::make_unique<Pending>();
    p->started_us = steady_us();
    p->request = std::move(request);
    const std::uint64_t token = p->request.token;
    const std::size_t n = p->request.records.size();
    p->records.resize(n);
    p->dependents.resize(n);
    for (std::uint32_t i = 0; i < n; ++i) {
        Pending::Record &r = p->records[i];
        r.owner = p.get();
        r.index = i;
        for (std::uint32_t before : p->request.records[i].after)
            if (before < i) {
                r.waiting++;
                p->dependents[before].push_back(i);
            }
        if (r.waiting == 0) {
            r.state = Slot::Ready;
            p->ready.push_back(i);
        }
    }
    std::string error;
    p->producer = n == 0 ? nullptr : producer_for(p->request, &error);
    Pending &pending = *p;
    requests_.emplace(token, std::move(p));
    if (n > 0 && !pending.producer) {
        sink::Completion c;
        c.token = token;
        c.transport = retry::Transport::Other;
        c.detail = error;
        c.records.assign(n, sink::RecordResult::NotWritten);
        done_.push_back(std::move(c));
        requests_.erase(token);
        return;
    }
    if (pending.producer) {
        pending.producer->requests++;
        pending.producer->last_used_ms = steady_ms();
    }
    produce_ready(pending); // in id order
    finish_if_done(pending);
}

void Sink::produce_ready(Pending &p) {
    std::size_t k = 0;
    for (; k < p.ready.size(); ++k) {
        const std::uint32_t index = p.ready[k];
        produce(p, index);
        if (p.queue_full)
            break;
    }
    p.ready.erase(p.ready.begin(), p.ready.begin() + std::ptrdiff_t(k));
    if (p.queue_full && std::find(queue_full_.begin(), queue_full_.end(), p.request.token) == queue_full_.end())
        queue_full_.push_back(p.request.token);
}

void Sink::produce(Pending &p, std::uint32_t index) {
    Pending::Record &slot = p.records[index];
    sink::Record &r = p.request.records[index];
    Producer &producer = *p.producer;
    rd_kafka_headers_t *headers = rd_kafka_headers_new(r.headers.size());
    for (const auto &h : r.headers)
        rd_kafka_header_add(headers, h.first.data(), ssize_t(h.first.size()), h.second.data(), ssize_t(h.second.size()));
    // No copy of the value (msgflags 0): the request lives until its last report.
    const void *key = r.key ? r.key->data() : nullptr;
    const std::size_t key_size = r.key ? r.key->size() : 0;
    const rd_kafka_resp_err_t err = rd_kafka_producev(
        producer.rk, RD_KAFKA_V_RKT(producer.rkt), RD_KAFKA_V_PARTITION(RD_KAFKA_PARTITION_UA),
        RD_KAFKA_V_KEY(key, key_size),
        RD_KAFKA_V_VALUE(r.value.data(), r.value.size()), RD_KAFKA_V_MSGFLAGS(0), RD_KAFKA_V_HEADERS(headers),
        RD_KAFKA_V_OPAQUE(&slot), RD_KAFKA_V_END);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        slot.state = Slot::InFlight;
        p.in_flight++;
        producer.records++;
        return;
    }
    rd_kafka_headers_destroy(headers);
    if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
        p.queue_full = true; // tried again from serve()
        return;
    }
    if (err == RD_KAFKA_RESP_ERR__FATAL)
        producer.replace = true;
    settle(p, index, err, nullptr);
}

void Sink::settle(Pending &p, std::uint32_t index, int error, const char *detail) {
    Pending::Record &slot = p.records[index];
    if (error == RD_KAFKA_RESP_ERR_NO_ERROR) {
        slot.state = Slot::Written;
        for (std::uint32_t d : p.dependents[index]) {
            Pending::Record &next = p.records[d];
            if (next.state == Slot::Waiting && --next.waiting == 0) {
                next.state = Slot::Ready;
                p.ready.push_back(d);
            }
        }
        return;
    }
    // Its dependents stay Waiting: they complete as NotWritten and go again, after it.
    slot.error = error;
    switch (static_cast<rd_kafka_resp_err_t>(error)) {
    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
    case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
        if (p.producer)
            p.producer->replace = true; // (librdkafka keeps the topic's error until it refreshes metadata)
        break;
    default:
        break;
    }
    const bool rejected = transport_of(error) == retry::Transport::Rejected;
    slot.state = rejected ? Slot::Rejected : Slot::Failed;
    // The detail names the most telling failure: a refusal over a transient one.
    if (p.first_error == 0 || (rejected && transport_of(p.first_error) != retry::Transport::Rejected)) {
        p.first_error = error;
        p.first_detail = printable(detail ? detail : rd_kafka_err2str(static_cast<rd_kafka_resp_err_t>(error)));
    }
}

void Sink::on_report(Pending &p, std::uint32_t index, int error, const char *detail) {
    if (p.in_flight > 0)
        p.in_flight--;
    settle(p, index, error, detail);
    if (!p.queue_full)
        produce_ready(p);
    finish_if_done(p); // may free p: nothing after this
}

void Sink::finish_if_done(Pending &p) {
    if (p.in_flight > 0 || !p.ready.empty())
        return;
    sink::Completion c;
    c.token = p.request.token;
    c.duration_us = std::uint64_t(std::max<std::int64_t>(0, steady_us() - p.started_us));
    const bool all_written = std::all_of(p.records.begin(), p.records.end(),
                                         [](const Pending::Record &r) { return r.state == Slot::Written; });
    if (all_written) {
        c.transport = retry::Transport::Delivered;
    } else {
        c.records.reserve(p.records.size());
        for (const Pending::Record &r : p.records)
            c.records.push_back(r.state == Slot::Written    ? sink::RecordResult::Written
                                : r.state == Slot::Rejected ? sink::RecordResult::Rejected
                                                            : sink::RecordResult::NotWritten);
        c.transport = transport_of(p.first_error);
        c.detail = p.first_detail;
        Producer *producer = p.producer;
        if (producer && c.transport != retry::Transport::Rejected) {
            // Records that time out while every broker was refused were blocked, not slow.
            if (producer->refused.load() > 0 && (c.transport == retry::Transport::Timeout ||
                                                 c.transport == retry::Transport::Connect))
                c.transport = retry::Transport::Blocked;
            if (!producer->last_error.empty())
                c.detail += " (last error: " + producer->last_error + ")";
        }
    }
    if (p.producer) {
        p.producer->requests--;
        p.producer->last_used_ms = steady_ms();
    }
    const std::uint64_t token = p.request.token;
    done_.push_back(std::move(c));
    requests_.erase(token);
}

void Sink::serve() {
    if (wake_[0] >= 0) {
        char buf[256];
        while (read(wake_[0], buf, sizeof buf) > 0) {
        }
    }
    for (auto &kv : producers_)
        rd_kafka_poll(kv.second->rk, 0);
    for (auto &p : retired_)
        rd_kafka_poll(p->rk, 0);
    if (callback_failure) {
        std::exception_ptr e = callback_failure;
        callback_failure = nullptr;
        std::rethrow_exception(e);
    }
    // Records that met a full queue, in the order their requests met it.
    std::vector<std::uint64_t> waiting;
    waiting.swap(queue_full_);
    for (std::uint64_t token : waiting) {
        auto it = requests_.find(token);
        if (it == requests_.end())
            continue;
        Pending &p = *it->second;
        p.queue_full = false;
        produce_ready(p);
        finish_if_done(p);
    }
    // Producers that failed for good are replaced for new requests.
    for (auto it = producers_.begin(); it != producers_.end();) {
        if (it->second->replace) {
            retired_.push_back(std::move(it->second));
            it = producers_.erase(it);
        } else {
            ++it;
        }
    }
    reap(steady_ms());
}

void Sink::reap(std::int64_t now_ms) {
    for (auto it = retired_.begin(); it != retired_.end();) {
        if ((*it)->records == 0 && (*it)->requests == 0) {
            destroy_producer(**it);
            it = retired_.erase(it);
        } else {
            ++it;
        }
    }
    for (auto it = producers_.begin(); it != producers_.end();) {
        Producer &p = *it->second;
        if (p.records == 0 && p.requests == 0 && now_ms - p.last_used_ms >= kIdleMs) {
            destroy_producer(p);
            it = producers_.erase(it);
        } else {
            ++it;
        }
    }
}

long Sink::timeout_ms() const {
    if (!queue_full_.empty())
        return kQueueFullRetryMs;
    long due = -1;
    const std::int64_t now = steady_ms();
    for (const auto &p : retired_)
        if (p->records == 0 && p->requests == 0)
            return 0;
    for (const auto &kv : producers_) {
        const Producer &p = *kv.second;
        if (p.records > 0 || p.requests > 0)
            continue;
        const long left = long(std::max<std::int64_t>(0, p.last_used_ms + kIdleMs - now));
        if (due < 0 || left < due)
            due = left;
    }
    return due;
}

void Sink::on_socket(int, int) { serve(); }

void Sink::on_timeout() { serve(); }

std::vector<sink::Completion> Sink::take_completions() {
    std::vector<sink::Completion> out;
    out.swap(done_);
    return out;
}

} // namespace pg_sync::kafka
