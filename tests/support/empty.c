/* Keeps kc_test_support non-empty. */
typedef int kc_test_support_empty_t;
