// The Kafka sink (core/kafka_sink.hpp) against librdkafka's mock cluster: a real Kafka protocol
// on loopback ports, in this process. Records are read back by an independent librdkafka
// consumer. The loop below drives the sink as the worker does: it waits on wait_fds() and
// timeout_ms() and calls on_socket()/on_timeout().
#include "core/kafka_records.hpp"
#include "core/kafka_sink.hpp"

#include <gtest/gtest.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <nlohmann/json.hpp>
#include <poll.h>

#include <chrono>
#include <map>
#include <set>

using namespace pg_sync;

namespace {

class Cluster {
  public:
    Cluster(int brokers, const char *topic, int partitions) {
        char err[256];
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        rd_kafka_conf_set(conf, "log_level", "0", err, sizeof err);
        rk_ = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
        mc_ = rd_kafka_mock_cluster_new(rk_, brokers);
        rd_kafka_mock_topic_create(mc_, topic, partitions, brokers < 3 ? brokers : 3);
        bootstrap = rd_kafka_mock_cluster_bootstraps(mc_);
        brokers_ = brokers;
    }
    ~Cluster() {
        rd_kafka_mock_cluster_destroy(mc_);
        rd_kafka_destroy(rk_);
    }
    rd_kafka_mock_cluster_t *mock() { return mc_; }
    void all_down() {
        for (int b = 1; b <= brokers_; ++b)
            rd_kafka_mock_broker_set_down(mc_, b);
    }
    void all_up() {
        for (int b = 1; b <= brokers_; ++b)
            rd_kafka_mock_broker_set_up(mc_, b);
    }
    void rtt(int ms) {
        for (int b = 1; b <= brokers_; ++b)
            rd_kafka_mock_broker_set_rtt(mc_, b, ms);
    }
    std::string bootstrap;

  private:
    rd_kafka_t *rk_ = nullptr;
    rd_kafka_mock_cluster_t *mc_ = nullptr;
    int brokers_ = 0;
};

struct Message {
    int partition;
    std::int64_t offset, timestamp;
    std::optional<std::string> key;
    std::string value;
    std::map<std::string, std::string> headers;
};

// Every record of the topic, read by a consumer of its own, in (partition, offset) order.
std::vector<Message> read_all(const std::string &bootstrap, const std::string &topic, int partitions) {
    char err[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap.c_str(), err, sizeof err);
    rd_kafka_conf_set(conf, "group.id", "reader", err, sizeof err);
    rd_kafka_conf_set(conf, "enable.partition.eof", "true", err, sizeof err);
    rd_kafka_conf_set(conf, "log_level", "0", err, sizeof err);
    rd_kafka_t *c = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(partitions);
    for (int p = 0; p < partitions; ++p)
        rd_kafka_topic_partition_list_add(parts, topic.c_str(), p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_assign(c, parts);
    rd_kafka_topic_partition_list_destroy(parts);
    std::vector<Message> out;
    int eof = 0;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (eof < partitions && std::chrono::steady_clock::now() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 100);
        if (!m)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            ++eof;
        } else if (!m->err) {
            Message msg{m->partition, m->offset, rd_kafka_message_timestamp(m, nullptr), {}, {}, {}};
            if (m->key)
                msg.key = std::string(static_cast<const char *>(m->key), m->key_len);
            msg.value.assign(static_cast<const char *>(m->payload), m->len);
            rd_kafka_headers_t *h = nullptr;
            if (!rd_kafka_message_headers(m, &h)) {
                const char *name;
                const void *value;
                size_t size;
                for (size_t i = 0; !rd_kafka_header_get_all(h, i, &name, &value, &size); ++i)
                    msg.headers[name] = std::string(static_cast<const char *>(value), size);
            }
            out.push_back(std::move(msg));
        }
        rd_kafka_message_destroy(m);
    }
    EXPECT_EQ(eof, partitions) << "the reader did not reach the end of every partition";
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);
    return out;
}

// Drives the sink until `count` completions came (or 60 s passed), as the worker's loop does.
struct Loop {
    kafka::Sink &sink;
    int timeouts = 0; // on_timeout() calls: the sink's own timer, never a polling tick
    std::vector<sink::Completion> run(std::size_t count) {
        std::vector<sink::Completion> done;
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
        while (done.size() < count && std::chrono::steady_clock::now() < deadline) {
            for (sink::Completion &c : sink.take_completions())
                done.push_back(std::move(c));
            if (done.size() >= count)
                break;
            std::vector<pollfd> fds;
            sink.wait_fds_changed();
            sink.wait_fds_replaced();
            for (const auto &kv : sink.wait_fds())
                fds.push_back({kv.first, short(kv.second & sink::kWantRead ? POLLIN : 0), 0});
            const long t = sink.timeout_ms();
            const int n = poll(fds.data(), fds.size(), t < 0 ? 1000 : int(std::min(t, 1000L)));
            if (n > 0) {
                for (const pollfd &p : fds)
                    if (p.revents)
                        sink.on_socket(p.fd, sink::kWantRead);
            } else if (sink.timeout_ms() == 0) {
                ++timeouts;
                sink.on_timeout();
            }
        }
        for (sink::Completion &c : sink.take_completions())
            done.push_back(std::move(c));
        return done;
    }
};

// Kafka's murmur2 (org.apache.kafka.common.utils.Utils.murmur2), written here from its
// definition, independently of librdkafka: the partition a Java producer picks for a key.
std::int32_t murmur2(const std::string &data) {
    const std::uint32_t m = 0x5bd1e995;
    const int r = 24;
    const std::size_t length = data.size();
    std::uint32_t h = 0x9747b28c ^ std::uint32_t(length);
    const auto byte = [&](std::size_t i) { return std::uint32_t(static_cast<unsigned char>(data[i])); };
    for (std::size_t i = 0; i + 4 <= length; i += 4) {
        std::uint32_t k = byte(i) | byte(i + 1) << 8 | byte(i + 2) << 16 | byte(i + 3) << 24;
        k *= m;
        k ^= k >> r;
        k *= m;
        h *= m;
        h ^= k;
    }
    const std::size_t tail = length & ~std::size_t(3);
    switch (length % 4) {
    case 3:
        h ^= byte(tail + 2) << 16;
        [[fallthrough]];
    case 2:
        h ^= byte(tail + 1) << 8;
        [[fallthrough]];
    case 1:
        h ^= byte(tail);
        h *= m;
    }
    h ^= h >> 13;
    h *= m;
    h ^= h >> 15;
    return std::int32_t(h);
}

int java_partition(const std::string &key, int partitions) { return int((murmur2(key) & 0x7fffffff) % partitions); }

struct Event {
    std::int64_t id;
    std::string key; // the key object's JSON; "" for an emit without key
};

sink::Request request(const std::string &url, std::uint64_t token, const std::vector<Event> &events,
                      std::string settings = "{}", long timeout_ms = 10000, std::size_t pad = 0) {
    std::vector<std::string> keys, payloads;
    keys.reserve(events.size());
    payloads.reserve(events.size());
    std::vector<envelope::EventView> views;
    for (const Event &e : events) {
        keys.push_back(e.key);
        payloads.push_back("{\"pad\":\"" + std::string(pad, 'x') + "\"}");
    }
    for (std::size_t i = 0; i < events.size(); ++i) {
        envelope::EventView v;
        v.id = events[i].id;
        v.op = "insert";
        v.table = std::string_view("public.t");
        v.key = std::string_view(keys[i]);
        v.new_row = std::string_view(payloads[i]);
        v.captured_at = "2026-11-23T10:15:02.123456Z";
        views.push_back(v);
    }
    sink::Request r;
    r.token = token;
    r.url = url;
    r.settings = std::move(settings);
    r.timeout_ms = timeout_ms;
    kafka::build_records(views, r.records);
    return r;
}

std::string key_of(int i) { return "{\"id\":" + std::to_string(i) + "}"; }

} // namespace

TEST(KafkaMurmur2, KafkasOwnTestVectors) {
    // org.apache.kafka.common.utils.UtilsTest#testMurmur2
    EXPECT_EQ(murmur2("21"), -973932308);
    EXPECT_EQ(murmur2("foobar"), -790332482);
    EXPECT_EQ(murmur2("a-little-bit-long-string"), -985981536);
    EXPECT_EQ(murmur2("a-little-bit-longer-string"), -1486304829);
    EXPECT_EQ(murmur2("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"), -58897971);
    EXPECT_EQ(murmur2("abc"), 479470107);
}

TEST(KafkaSink, DeliversEveryRecordWhereAJavaProducerWouldPutIt) {
    Cluster cluster(3, "events", 6);
    kafka::Sink sink({});
    Loop loop{sink};
    std::vector<Event> events;
    for (int i = 1; i <= 60; ++i)
        events.push_back({i, key_of(i)});
    sink.submit(request("kafka://" + cluster.bootstrap + "/events", 1, events));
    EXPECT_EQ(sink.in_flight(), 1u);
    const auto done = loop.run(1);
    ASSERT_EQ(done.size(), 1u);
    EXPECT_EQ(done[0].token, 1u);
    EXPECT_EQ(done[0].transport, retry::Transport::Delivered) << done[0].detail;
    EXPECT_TRUE(done[0].records.empty());
    EXPECT_EQ(sink.in_flight(), 0u);
    // Woken by librdkafka's queue (the pipe), never by a timer.
    EXPECT_EQ(loop.timeouts, 0);

    const auto messages = read_all(cluster.bootstrap, "events", 6);
    ASSERT_EQ(messages.size(), 60u);
    std::set<int> partitions;
    for (const Message &m : messages) {
        ASSERT_TRUE(m.key);
        const nlohmann::json value = nlohmann::json::parse(m.value);
        EXPECT_EQ(key_of(value["id"].get<int>()), *m.key);
        EXPECT_EQ(value["key"].dump(), *m.key);
        EXPECT_EQ(m.headers.at("id"), std::to_string(value["id"].get<int>()));
        EXPECT_EQ(m.headers.at("op"), "insert");
        EXPECT_EQ(m.headers.at("table"), "public.t");
        EXPECT_EQ(m.partition, java_partition(*m.key, 6)) << *m.key;
        partitions.insert(m.partition);
    }
    EXPECT_EQ(partitions.size(), 6u);
}

TEST(KafkaSink, RecordsOfOneKeyAreNeverInFlightTogether) {
    Cluster cluster(3, "ordered", 6);
    cluster.rtt(100); // every acknowledgement takes at least 100 ms
    kafka::Sink sink({});
    Loop loop{sink};
    // One request: three events of key 1, one of key 2 (the scheduler puts same-key events in
    // one request, in order).
    sink.submit(request("kafka://" + cluster.bootstrap + "/ordered", 7,
                        {{1, key_of(1)}, {2, key_of(2)}, {3, key_of(1)}, {4, key_of(1)}}));
    const auto done = loop.run(1);
    ASSERT_EQ(done.size(), 1u);
    EXPECT_EQ(done[0].transport, retry::Transport::Delivered) << done[0].detail;
    const auto messages = read_all(cluster.bootstrap, "ordered", 6);
    ASSERT_EQ(messages.size(), 4u);
    std::map<int, Message> by_id;
    for (const Message &m : messages)
        by_id[nlohmann::json::parse(m.value)["id"].get<int>()] = m;
    // A record's timestamp is when it was handed to librdkafka: each record of key 1 was
    // produced only after the acknowledgement of the one before (>= one round trip later).
    EXPECT_GE(by_id[3].timestamp - by_id[1].timestamp, 99);
    EXPECT_GE(by_id[4].timestamp - by_id[3].timestamp, 99);
    EXPECT_LT(by_id[1].offset, by_id[3].offset);
    EXPECT_LT(by_id[3].offset, by_id[4].offset);
    EXPECT_EQ(by_id[1].partition, by_id[4].partition);
}

TEST(KafkaSink, ARecordTooLargeIsRejectedAndHoldsBackItsKeyOnly) {
    Cluster cluster(3, "sized", 6);
    kafka::Sink sink({});
    Loop loop{sink};
    // message.max.bytes 1000: the first record (2000 bytes of payload) cannot go.
    sink::Request r = request("kafka://" + cluster.bootstrap + "/sized", 3, {{1, key_of(1)}}, R"({"message.max.bytes":1000})",
                              10000, 2000);
    sink::Request small = request("kafka://" + cluster.bootstrap + "/sized", 0, {{2, key_of(1)}, {3, key_of(2)}});
    // Same request: [big key 1, small key 1, small key 2].
    for (sink::Record &rec : small.records) {
        for (std::uint32_t &a : rec.after)
            a += 1;
        r.records.push_back(std::move(rec));
    }
    r.records[1].after = {0};
    sink.submit(std::move(r));
    const auto done = loop.run(1);
    ASSERT_EQ(done.size(), 1u);
    EXPECT_EQ(done[0].transport, retry::Transport::Rejected);
    EXPECT_NE(done[0].detail.find("too large"), std::string::npos) << done[0].detail;
    EXPECT_EQ(done[0].records, (std::vector<sink::RecordResult>{sink::RecordResult::Rejected, sink::RecordResult::NotWritten,
                                                                sink::RecordResult::Written}));
    const auto messages = read_all(cluster.bootstrap, "sized", 6);
    ASSERT_EQ(messages.size(), 1u);
    EXPECT_EQ(*messages[0].key, key_of(2));
}

TEST(KafkaSink, AuthorizationFailedIsRejected) {
    Cluster cluster(1, "denied", 1);
    // The broker answers the next produce request: not authorized for this topic.
    rd_kafka_mock_push_request_errors(cluster.mock(), 0 /* Produce */, 1, RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
    kafka::Sink sink({});
    Loop loop{sink};
    sink.submit(request("kafka://" + cluster.bootstrap + "/denied", 5, {{1, key_of(1)}, {2, key_of(1)}}, "{}", 5000));
    const auto done = loop.run(1);
    ASSERT_EQ(done.size(), 1u);
    EXPECT_EQ(done[0].transport, retry::Transport::Rejected) << done[0].detail;
    EXPECT_EQ(done[0].records,
              (std::vector<sink::RecordResult>{sink::RecordResult::Rejected, sink::RecordResult::NotWritten}));
    const retry::Outcome verdict = retry::classify(done[0].response(), 1, retry::Policy{}, 0, {});
    EXPECT_EQ(verdict.verdict, retry::Verdict::DeadLetter);
    EXPECT_EQ(verdict.reason.rfind("rejected: ", 0), 0u) << verdict.reason;
}

TEST(KafkaSink, UnknownTopicIsRejected) {
    Cluster cluster(3, "known", 6);
    rd_kafka_mock_topic_set_error(cluster.mock(), "unknown", RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART);
    kafka::Sink sink({});
    Loop loop{sink};
    sink.submit(request("kafka://" + cluster.bootstrap + "/unknown", 6, {{1, key_of(1)}}, "{}", 4000));
    const auto done = loop.run(1);
    ASSERT_EQ(done.size(), 1u);
    EXPECT_EQ(done[0].transport, retry::Transport::Rejected) << done[0].detail;
    EXPECT_EQ(done[0].records, (std::vector<sink::RecordResult>{sink::RecordResult::Rejected}));
}

TEST(KafkaSink, BrokersDownIsTransientThenDeliveredOnceBack) {
    Cluster cluster(3, "later", 6);
    cluster.all_down();
    kafka::Sink sink({});
    Loop loop{sink};
    const std::string url = "kafka://" + cluster.bootstrap + "/later";
    sink.submit(request(url, 1, {{1, key_of(1)}, {2, key_of(1)}}, "{}", 1000));
    auto done = loop.run(1);
    ASSERT_EQ(done.size(), 1u);
    EXPECT_NE(done[0].transport, retry::Transport::Rejected);
    EXPECT_NE(done[0].transport, retry::Transport::Delivered);
    // The second record of the key was never sent: it waits for the first.
    EXPECT_EQ(done[0].records,
              (std::vector<sink::RecordResult>{sink::RecordResult::NotWritten, sink::RecordResult::NotWritten}));
    const retry::Outcome verdict = retry::classify(done[0].response(), 1, retry::Policy{}, 0, {});
    EXPECT_EQ(verdict.verdict, retry::Verdict::Retry) << verdict.reason;
    cluster.all_up();
    sink.submit(request(url, 2, {{1, key_of(1)}, {2, key_of(1)}}, "{}", 10000));
    done = loop.run(1);
    ASSERT_EQ(done.size(), 1u);
    EXPECT_EQ(done[0].transport, retry::Transport::Delivered) << done[0].detail;
    const auto messages = read_all(cluster.bootstrap, "later", 6);
    ASSERT_EQ(messages.size(), 2u);
    EXPECT_EQ(nlohmann::json::parse(messages[0].value)["id"], 1); // one partition, in order
    EXPECT_EQ(nlohmann::json::parse(messages[1].value)["id"], 2);
}

// test/210 d lost records this way (librdkafka 2.0.2): two batches of one partition in flight,
// the first answered with an error, the second appended. A real broker refuses the second
// (OUT_OF_ORDER_SEQUENCE_NUMBER: its sequence does not follow what the partition holds);
// librdkafka's mock cluster checks sequences only for transactional producers, so it appends it,
// and librdkafka then reports the first batch's record written ("implicitly acked by subsequent
// batch success"), without an offset. The sink takes that report as not written.
TEST(KafkaSink, AnAcknowledgementWithoutOffsetIsNotWritten) {
    Cluster cluster(1, "gap", 1);
    cluster.rtt(100); // both produce requests are in flight before the first is answered
    // The next produce request fails with an error that says "not persisted".
    rd_kafka_mock_push_request_errors(cluster.mock(), 0 /* Produce */, 1, RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS);
    kafka::Sink sink({});
    Loop loop{sink};
    const std::string url = "kafka://" + cluster.bootstrap + "/gap";
    // Two keys, one partition, one record per batch: two produce requests.
    sink.submit(request(url, 1, {{1, key_of(1)}, {2, key_of(2)}}, R"({"batch.num.messages":1})"));
    auto done = loop.run(1);
    ASSERT_EQ(done.size(), 1u);
    EXPECT_EQ(done[0].records,
              (std::vector<sink::RecordResult>{sink::RecordResult::NotWritten, sink::RecordResult::Written}))
        << done[0].detail;
    EXPECT_EQ(done[0].transport, retry::Transport::Other);
    EXPECT_NE(done[0].detail.find("without an offset"), std::string::npos) << done[0].detail;
    auto messages = read_all(cluster.bootstrap, "gap", 1);
    ASSERT_EQ(messages.size(), 1u); // the mock never wrote the first record
    EXPECT_EQ(nlohmann::json::parse(messages[0].value)["id"], 2);
    // Sent again, it arrives.
    sink.submit(request(url, 2, {{1, key_of(1)}}, R"({"batch.num.messages":1})"));
    done = loop.run(1);
    ASSERT_EQ(done.size(), 1u);
    EXPECT_EQ(done[0].transport, retry::Transport::Delivered) << done[0].detail;
    messages = read_all(cluster.bootstrap, "gap", 1);
    ASSERT_EQ(messages.size(), 2u);
    EXPECT_EQ(nlohmann::json::parse(messages[1].value)["id"], 1);
}

TEST(KafkaSink, OnlyASuccessWithItsOffsetIsWritten) {
    EXPECT_TRUE(kafka::acknowledged_at_offset(RD_KAFKA_RESP_ERR_NO_ERROR, RD_KAFKA_MSG_STATUS_PERSISTED, 0));
    EXPECT_TRUE(kafka::acknowledged_at_offset(RD_KAFKA_RESP_ERR_NO_ERROR, RD_KAFKA_MSG_STATUS_PERSISTED, 1793));
    EXPECT_FALSE(kafka::acknowledged_at_offset(RD_KAFKA_RESP_ERR_NO_ERROR, RD_KAFKA_MSG_STATUS_PERSISTED,
                                               RD_KAFKA_OFFSET_INVALID));
    EXPECT_FALSE(kafka::acknowledged_at_offset(RD_KAFKA_RESP_ERR_NO_ERROR, RD_KAFKA_MSG_STATUS_POSSIBLY_PERSISTED, 5));
    EXPECT_FALSE(kafka::acknowledged_at_offset(RD_KAFKA_RESP_ERR__MSG_TIMED_OUT, RD_KAFKA_MSG_STATUS_POSSIBLY_PERSISTED, -1));
}

TEST(KafkaSink, PrivateTargetsRefusedOnEveryConnection) {
    Cluster cluster(3, "private", 6);
    kafka::Options options;
    options.allow_private_targets = false;
    kafka::Sink sink(options);
    Loop loop{sink};
    sink.submit(request("kafka://" + cluster.bootstrap + "/private", 1, {{1, key_of(1)}}, "{}", 1000));
    const auto done = loop.run(1);
    ASSERT_EQ(done.size(), 1u);
    EXPECT_EQ(done[0].transport, retry::Transport::Blocked) << done[0].detail;
    EXPECT_TRUE(read_all(cluster.bootstrap, "private", 6).empty());
}

TEST(KafkaSink, ASettingsChangeMakesANewProducer) {
    Cluster cluster(1, "conf", 2);
    kafka::Sink sink({});
    Loop loop{sink};
    const std::string url = "kafka://" + cluster.bootstrap + "/conf";
    sink.submit(request(url, 1, {{1, key_of(1)}}));
    sink.submit(request(url, 2, {{2, key_of(2)}}));
    EXPECT_EQ(sink.producers(), 1u);
    sink.submit(request(url, 3, {{3, key_of(3)}}, R"({"compression.type":"lz4"})"));
    EXPECT_EQ(sink.producers(), 2u);
    const auto done = loop.run(3);
    ASSERT_EQ(done.size(), 3u);
    for (const auto &c : done)
        EXPECT_EQ(c.transport, retry::Transport::Delivered) << c.detail;
    EXPECT_EQ(read_all(cluster.bootstrap, "conf", 2).size(), 3u);
}

TEST(KafkaSink, ErrorCodesMapOntoTheRetryPolicy) {
    EXPECT_EQ(kafka::transport_of(RD_KAFKA_RESP_ERR_NO_ERROR), retry::Transport::Delivered);
    EXPECT_EQ(kafka::transport_of(RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE), retry::Transport::Rejected);
    EXPECT_EQ(kafka::transport_of(RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC), retry::Transport::Rejected);
    EXPECT_EQ(kafka::transport_of(RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED), retry::Transport::Rejected);
    EXPECT_EQ(kafka::transport_of(RD_KAFKA_RESP_ERR__MSG_TIMED_OUT), retry::Transport::Timeout);
    EXPECT_EQ(kafka::transport_of(RD_KAFKA_RESP_ERR__TRANSPORT), retry::Transport::ConnectionLost);
    EXPECT_EQ(kafka::transport_of(RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION), retry::Transport::Other);
    EXPECT_EQ(kafka::transport_of(RD_KAFKA_RESP_ERR_SASL_AUTHENTICATION_FAILED), retry::Transport::Other);
}
