<?php
// The original module's worker side in small: `gearman -w -f job ... -- php router.php`
// runs this once per job with the payload on stdin; like drush islandora-job-router it
// calls the job function and echoes its return value. A job that throws exits non-zero.
require __DIR__ . '/jobs.php';
$payload = json_decode(stream_get_contents(STDIN), true);
$function = $payload['func'];
if (!function_exists($function)) {
  fwrite(STDERR, "no such job: {$function}\n");
  exit(1);
}
try {
  echo call_user_func_array($function, $payload['args']);
} catch (Exception $e) {
  fwrite(STDERR, $e->getMessage() . "\n");
  exit(1);
}
