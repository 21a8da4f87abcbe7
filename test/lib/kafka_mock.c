/* A Kafka cluster for the tests and the benchmark: librdkafka's mock cluster (rdkafka_mock.h),
 * which speaks the real Kafka protocol on loopback ports, driven by commands on stdin.
 * test/lib/kafka.sh builds and runs it.
 *
 *   kafka_mock BROKERS TOPIC PARTITIONS
 *
 * Prints "bootstrap HOST:PORT,..." first, then one "ok COMMAND" (or "error ...") line per command:
 *
 *   down BROKER | up BROKER            rd_kafka_mock_broker_set_down / _set_up
 *   leader TOPIC PARTITION BROKER      rd_kafka_mock_partition_set_leader
 *   errors APIKEY ERR [ERR...]         rd_kafka_mock_push_request_errors: the next requests of
 *                                      that API (0: Produce) fail with these codes, in order
 *   topic_error TOPIC ERR              rd_kafka_mock_topic_set_error (metadata says ERR)
 *   create TOPIC PARTITIONS            rd_kafka_mock_topic_create
 *   rtt BROKER MS                      rd_kafka_mock_broker_set_rtt
 *
 * Ends at end of input. Brokers are numbered from 1; every topic has 3 replicas.
 *
 * Unlike a real broker, the mock does not check an idempotent (non-transactional) producer's
 * sequence numbers: a batch that follows a failed one is appended, and librdkafka then reports the
 * failed batch written, without an offset (docs/delivery.md, "Written means a broker's offset").
 *
 * The mock brokers' sockets get TCP_NODELAY, as a real Kafka broker's have (Apache Kafka sets it
 * on every connection it accepts): without it, a broker that answers two requests of one
 * connection back to back holds the second answer until the client acknowledges the first, and
 * Linux's delayed acknowledgements make that 40 ms, whatever the load. */
#define _GNU_SOURCE
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <dlfcn.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* librdkafka's mock brokers accept their connections with accept(2): this definition comes
 * first (the executable's symbols do), calls libc's and sets TCP_NODELAY on the new socket. */
int accept(int fd, struct sockaddr *address, socklen_t *length) {
    static int (*libc_accept)(int, struct sockaddr *, socklen_t *);
    if (!libc_accept)
        libc_accept = (int (*)(int, struct sockaddr *, socklen_t *))dlsym(RTLD_NEXT, "accept");
    const int s = libc_accept(fd, address, length);
    if (s >= 0) {
        const int one = 1;
        setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    return s;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s BROKERS TOPIC PARTITIONS\n", argv[0]);
        return 2;
    }
    const int brokers = atoi(argv[1]);
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    /* The handle only hosts the cluster: no broker to talk to, quiet logs. */
    rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof errstr);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (!rk) {
        fprintf(stderr, "rd_kafka_new: %s\n", errstr);
        return 1;
    }
    rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(rk, brokers);
    if (!mc) {
        fprintf(stderr, "rd_kafka_mock_cluster_new failed\n");
        return 1;
    }
    const int replicas = brokers < 3 ? brokers : 3;
    rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(mc, argv[2], atoi(argv[3]), replicas);
    if (err) {
        fprintf(stderr, "topic %s: %s\n", argv[2], rd_kafka_err2str(err));
        return 1;
    }
    printf("bootstrap %s\n", rd_kafka_mock_cluster_bootstraps(mc));
    fflush(stdout);

    char line[1024];
    while (fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\r\n")] = '\0';
        char *words[64];
        int n = 0;
        for (char *w = strtok(line, " "); w && n < 64; w = strtok(NULL, " "))
            words[n++] = w;
        if (n == 0)
            continue;
        const char *cmd = words[0];
        err = RD_KAFKA_RESP_ERR_NO_ERROR;
        if (strcmp(cmd, "down") == 0 && n == 2) {
            err = rd_kafka_mock_broker_set_down(mc, atoi(words[1]));
        } else if (strcmp(cmd, "up") == 0 && n == 2) {
            err = rd_kafka_mock_broker_set_up(mc, atoi(words[1]));
        } else if (strcmp(cmd, "leader") == 0 && n == 4) {
            err = rd_kafka_mock_partition_set_leader(mc, words[1], atoi(words[2]), atoi(words[3]));
        } else if (strcmp(cmd, "errors") == 0 && n >= 3) {
            rd_kafka_resp_err_t errs[62];
            for (int i = 2; i < n; ++i)
                errs[i - 2] = (rd_kafka_resp_err_t)atoi(words[i]);
            rd_kafka_mock_push_request_errors_array(mc, (int16_t)atoi(words[1]), (size_t)(n - 2), errs);
        } else if (strcmp(cmd, "topic_error") == 0 && n == 3) {
            rd_kafka_mock_topic_set_error(mc, words[1], (rd_kafka_resp_err_t)atoi(words[2]));
        } else if (strcmp(cmd, "create") == 0 && n == 3) {
            err = rd_kafka_mock_topic_create(mc, words[1], atoi(words[2]), replicas);
        } else if (strcmp(cmd, "rtt") == 0 && n == 3) {
            err = rd_kafka_mock_broker_set_rtt(mc, atoi(words[1]), atoi(words[2]));
        } else {
            printf("error unknown command: %s\n", cmd);
            fflush(stdout);
            continue;
        }
        if (err)
            printf("error %s: %s\n", cmd, rd_kafka_err2str(err));
        else
            printf("ok %s\n", cmd);
        fflush(stdout);
    }
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(rk);
    return 0;
}
