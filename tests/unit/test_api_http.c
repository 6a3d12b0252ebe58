/* Unit tests for the API's pure helpers: route table lookup ({id} segments, 404 vs 405,
 * HEAD as GET), Range parsing and If-None-Match matching. */
#include "api/api.h"
#include "qd_test.h"

static int route_of(const char *method, const char *path, char *id)
{
	char allow[64];
	return qd_api_route_lookup(method, path, id, allow, sizeof allow);
}

int main(void)
{
	char id[64], allow[64];
	CHECK_EQ_INT(route_of("GET", "/healthz", id), QD_ROUTE_ID_qd_api_healthz);
	CHECK_EQ_INT(route_of("POST", "/v1/models", id), QD_ROUTE_ID_qd_api_models_create);
	CHECK_EQ_INT(route_of("GET", "/v1/models", id), QD_ROUTE_ID_qd_api_models_list);
	CHECK_EQ_INT(route_of("GET", "/v1/models/", id), QD_ROUTE_ID_qd_api_models_list);
	CHECK_EQ_INT(route_of("GET", "/v1/models/mdl_abc", id), QD_ROUTE_ID_qd_api_models_get);
	CHECK_STR(id, "mdl_abc");
	CHECK_EQ_INT(route_of("HEAD", "/v1/models/mdl_abc/content", id), QD_ROUTE_ID_qd_api_models_content);
	CHECK_EQ_INT(route_of("POST", "/v1/jobs/job_1/cancel", id), QD_ROUTE_ID_qd_api_jobs_cancel);
	CHECK_STR(id, "job_1");
	CHECK_EQ_INT(route_of("GET", "/v1/jobs/job_1/log", id), QD_ROUTE_ID_qd_api_jobs_log);
	CHECK_EQ_INT(route_of("GET", "/v1/artifacts/art_9", id), QD_ROUTE_ID_qd_api_artifacts_get);
	CHECK_EQ_INT(route_of("GET", "/v1/nothing", id), -QD_ENOT_FOUND);
	CHECK_EQ_INT(route_of("GET", "/v1/models/a/b/c", id), -QD_ENOT_FOUND);
	CHECK_EQ_INT(route_of("GET", "/v1/models//content", id), -QD_ENOT_FOUND);  /* empty id */
	CHECK_EQ_INT(route_of("GET", "/v1/models/a%2Fb", id), -QD_ENOT_FOUND);     /* bad id char */
	char longid[200] = "/v1/models/";
	memset(longid + 11, 'a', 100);
	CHECK_EQ_INT(route_of("GET", longid, id), -QD_ENOT_FOUND);                 /* id too long */
	CHECK_EQ_INT(qd_api_route_lookup("PUT", "/v1/models", id, allow, sizeof allow), -QD_EMETHOD);
	CHECK_STR(allow, "POST, GET");
	CHECK_EQ_INT(qd_api_route_lookup("PATCH", "/v1/jobs/x", id, allow, sizeof allow), -QD_EMETHOD);
	CHECK_STR(allow, "GET, DELETE");

	uint64_t a, b;
	CHECK_EQ_INT(qd_api_parse_range("bytes=0-9", 100, &a, &b), 0);
	CHECK(a == 0 && b == 9);
	CHECK_EQ_INT(qd_api_parse_range("bytes=90-", 100, &a, &b), 0);
	CHECK(a == 90 && b == 99);
	CHECK_EQ_INT(qd_api_parse_range("bytes=-10", 100, &a, &b), 0);
	CHECK(a == 90 && b == 99);
	CHECK_EQ_INT(qd_api_parse_range("bytes=-1000", 100, &a, &b), 0);
	CHECK(a == 0 && b == 99);
	CHECK_EQ_INT(qd_api_parse_range("bytes=50-1000", 100, &a, &b), 0);
	CHECK(a == 50 && b == 99);
	CHECK_EQ_INT(qd_api_parse_range("bytes=100-", 100, &a, &b), -1);
	CHECK_EQ_INT(qd_api_parse_range("bytes=9-1", 100, &a, &b), -1);
	CHECK_EQ_INT(qd_api_parse_range("bytes=0-1,5-6", 100, &a, &b), -1);
	CHECK_EQ_INT(qd_api_parse_range("bytes=x-1", 100, &a, &b), -1);
	CHECK_EQ_INT(qd_api_parse_range("items=0-1", 100, &a, &b), -1);
	CHECK_EQ_INT(qd_api_parse_range("bytes=-0", 100, &a, &b), -1);
	CHECK_EQ_INT(qd_api_parse_range("bytes=0-0", 0, &a, &b), -1);
	CHECK_EQ_INT(qd_api_parse_range("bytes=99999999999999999999999-", 100, &a, &b), -1);

	const char *sha = "ab12";
	CHECK(qd_api_etag_match("\"ab12\"", sha));
	CHECK(qd_api_etag_match("W/\"ab12\"", sha));
	CHECK(qd_api_etag_match("\"x\", \"ab12\"", sha));
	CHECK(qd_api_etag_match("*", sha));
	CHECK(!qd_api_etag_match("\"ab1\"", sha));
	CHECK(!qd_api_etag_match("\"ab123\"", sha));
	CHECK(!qd_api_etag_match("", sha));
	CHECK(!qd_api_etag_match(NULL, sha));
	return qd_test_done("test_api_http");
}
