// Kafka endpoint configuration (core/kafka_config.hpp): URLs, the settings allow-list, the
// settings pg_sync fixes; and what validate.cpp makes of them.
#include "core/kafka_config.hpp"
#include "core/validate.hpp"

#include <gtest/gtest.h>

using namespace pg_sync;

namespace {

std::optional<kafka::Target> parse(const std::string &url, std::string *error = nullptr) {
    std::string e;
    auto t = kafka::parse_url(url, &e);
    if (error)
        *error = e;
    return t;
}

} // namespace

TEST(KafkaUrl, BrokersAndTopic) {
    auto t = parse("kafka://Broker1.example.com:9093,10.0.0.7/orders.v1");
    ASSERT_TRUE(t);
    EXPECT_EQ(t->bootstrap(), "broker1.example.com:9093,10.0.0.7:9092"); // default port, lower case
    EXPECT_EQ(t->topic, "orders.v1");
    EXPECT_EQ(t->origin(), "kafka://10.0.0.7:9092,broker1.example.com:9093"); // any order: one cluster
    t = parse("KAFKA://[2001:DB8::1]:9094/t_1-x");
    ASSERT_TRUE(t);
    EXPECT_EQ(t->bootstrap(), "[2001:db8::1]:9094");
    EXPECT_TRUE(kafka::is_kafka_url("Kafka://h/t"));
    EXPECT_FALSE(kafka::is_kafka_url("https://h/t"));
    EXPECT_TRUE(kafka::is_kafka_url("KAFKA://"));
    EXPECT_FALSE(kafka::is_kafka_url("kafka:/"));
    EXPECT_FALSE(kafka::is_kafka_url(""));
    EXPECT_FALSE(kafka::is_kafka_url("kafkA:/h/t"));
    EXPECT_FALSE(kafka::is_kafka_url(" kafka://h/t"));
    static_assert(noexcept(kafka::is_kafka_url("")), "called straight from SQL (pg_sync._is_kafka_url)");
    // A broker given twice counts once.
    EXPECT_EQ(parse("kafka://h:1,h:1/t")->brokers.size(), 1u);
}

TEST(KafkaUrl, Refusals) {
    std::string e;
    EXPECT_FALSE(parse("kafka://h:9092", &e));
    EXPECT_EQ(e, "a kafka endpoint URL names its topic");
    EXPECT_FALSE(parse("kafka://h:9092/", &e));
    EXPECT_FALSE(parse("kafka:///t", &e));
    EXPECT_EQ(e, "endpoint URL has no host");
    EXPECT_FALSE(parse("kafka://user:pw@h/t", &e));
    EXPECT_EQ(e, "endpoint URL must not contain credentials");
    EXPECT_FALSE(parse("kafka://h/t?acks=1", &e));
    EXPECT_FALSE(parse("kafka://h/t#x", &e));
    EXPECT_FALSE(parse("kafka://h:0/t", &e));
    EXPECT_EQ(e, "broker port must be between 1 and 65535");
    EXPECT_FALSE(parse("kafka://h:65536/t", &e));
    EXPECT_FALSE(parse("kafka://h:x/t", &e));
    EXPECT_FALSE(parse("kafka://h,/t", &e));
    EXPECT_FALSE(parse("kafka://-h/t", &e));
    EXPECT_FALSE(parse("kafka://h_1/t", &e));
    EXPECT_FALSE(parse("kafka://[zz::1]/t", &e));
    EXPECT_FALSE(parse("kafka://h/a/b", &e));
    EXPECT_FALSE(parse("kafka://h/..", &e));
    EXPECT_FALSE(parse("kafka://h/" + std::string(250, 'a'), &e));
    EXPECT_TRUE(parse("kafka://h/" + std::string(249, 'a'), &e));
    EXPECT_FALSE(parse("kafka://h/t t", &e));
    std::string many = "kafka://";
    for (int i = 0; i < 33; ++i)
        many += (i ? ",h" : "h") + std::to_string(i);
    EXPECT_FALSE(parse(many + "/t", &e));
    EXPECT_EQ(e, "too many brokers in endpoint URL");
}

TEST(KafkaSettings, AllowList) {
    std::string e, hint;
    auto s = kafka::parse_settings(R"({"compression.type":"lz4","linger.ms":10,"sasl.mechanism":"SCRAM-SHA-256",
                                       "sasl.username":"u","sasl.password":"p","security.protocol":"sasl_ssl",
                                       "ssl.ca.pem":"-----BEGIN CERTIFICATE-----\n...","batch.num.messages":500,
                                       "client.id":"app","message.max.bytes":2000000,"batch.size":100000})",
                                   &e);
    ASSERT_TRUE(s) << e;
    EXPECT_EQ(s->size(), 11u);
    for (const char *refused :
         {"acks", "enable.idempotence", "partitioner", "message.timeout.ms", "bootstrap.servers",
          "ssl.ca.location", "ssl.key.location", "sasl.kerberos.kinit.cmd", "sasl.kerberos.keytab",
          "sasl.oauthbearer.token.endpoint.url", "ssl.engine.location", "ssl.providers", "plugin.library.paths",
          "enable.ssl.certificate.verification", "ssl.endpoint.identification.algorithm", "debug"}) {
        EXPECT_FALSE(kafka::allowed_setting(refused)) << refused;
        EXPECT_FALSE(kafka::parse_settings(std::string("{\"") + refused + "\":\"x\"}", &e, &hint)) << refused;
        EXPECT_EQ(e, std::string("kafka setting \"") + refused + "\" cannot be set");
    }
    EXPECT_FALSE(kafka::parse_settings(R"({"sasl.mechanism":"GSSAPI"})", &e));
    EXPECT_FALSE(kafka::parse_settings(R"({"sasl.mechanisms":"OAUTHBEARER"})", &e));
    EXPECT_FALSE(kafka::parse_settings(R"({"linger.ms":1.5})", &e));
    EXPECT_FALSE(kafka::parse_settings(R"({"linger.ms":null})", &e));
    EXPECT_FALSE(kafka::parse_settings(R"([1])", &e));
    EXPECT_FALSE(kafka::parse_settings("not json", &e));
    EXPECT_TRUE(kafka::parse_settings("{}", &e));
}

TEST(KafkaSettings, FixedOnesComeLastAndCannotBeChosen) {
    const kafka::Settings fixed = kafka::fixed_settings(2500);
    auto value = [&](const std::string &name) {
        for (const auto &kv : fixed)
            if (kv.first == name)
                return kv.second;
        return std::string("(unset)");
    };
    EXPECT_EQ(value("acks"), "all");
    EXPECT_EQ(value("enable.idempotence"), "true");
    EXPECT_EQ(value("partitioner"), "murmur2_random");
    EXPECT_EQ(value("message.timeout.ms"), "2500");
    EXPECT_EQ(value("topic.metadata.propagation.max.ms"), "1250");
    for (const auto &kv : fixed)
        EXPECT_FALSE(kafka::allowed_setting(kv.first)) << kv.first;
    // The defaults are the user's to change.
    for (const auto &kv : kafka::default_settings("pg_sync/x"))
        EXPECT_TRUE(kafka::allowed_setting(kv.first)) << kv.first;
    EXPECT_EQ(kafka::default_settings("pg_sync/x")[0], (std::pair<std::string, std::string>{"client.id", "pg_sync/x"}));
}

TEST(KafkaValidate, UrlsSettingsAndWhatGoesWithThem) {
    EXPECT_TRUE(validate::url("kafka://127.0.0.1:9092,127.0.0.2/t").ok());
    EXPECT_EQ(validate::url("kafka://h").message, "a kafka endpoint URL names its topic");
    EXPECT_EQ(validate::url("ftp://h/x").message, "endpoint URL scheme must be http, https or kafka");
    EXPECT_EQ(validate::url_origin("kafka://B:1,c/t"), "kafka://b:1,c:9092");
    // librdkafka checks the values.
    EXPECT_TRUE(validate::kafka_settings(R"({"compression.type":"zstd","linger.ms":"20"})").ok());
    validate::Problem p = validate::kafka_settings(R"({"compression.type":"brotli"})");
    EXPECT_EQ(p.message, "invalid value for kafka setting \"compression.type\"");
    EXPECT_NE(p.detail.find("librdkafka"), std::string::npos);
    EXPECT_FALSE(validate::kafka_settings(R"({"linger.ms":-1})").ok());
    EXPECT_FALSE(validate::kafka_settings(R"({"message.max.bytes":1})").ok());
    // Headers and secrets are HTTP's, kafka_settings Kafka's.
    EXPECT_TRUE(validate::transport_options("kafka://h/t", false, false, true).ok());
    EXPECT_EQ(validate::transport_options("kafka://h/t", true, false, false).message, "a kafka endpoint has no headers");
    EXPECT_EQ(validate::transport_options("kafka://h/t", false, true, false).message, "a kafka endpoint has no secret");
    EXPECT_EQ(validate::transport_options("https://h/", false, false, true).message,
              "kafka_settings apply to kafka:// endpoints only");
    EXPECT_TRUE(validate::transport_options("https://h/", true, true, false).ok());
}
