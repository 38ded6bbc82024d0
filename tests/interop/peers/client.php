<?php
// A PHP client as the original module's includes/utilities.inc submits jobs, driven by one
// JSON request on argv[1]; prints one JSON report. Results are base64: they are raw bytes.
//   {"server": "host:port", "action": "normal"|"background"|"status"|"batch",
//    "job": name, "args": [...], "site": prefix|null, "handle": h, "jobs": [[name, args], ...],
//    "timeout_ms": n}
$request = json_decode($argv[1], true);
[$host, $port] = explode(':', $request['server']);
$client = new GearmanClient();
$client->addServer($host, (int) $port);
// The original sets no timeout (it would wait forever): the tests must not.
$client->setTimeout($request['timeout_ms'] ?? 10000);

function function_name(?string $site, string $job): string {
  // Later versions of the module prefix the function for multisite installs.
  return $site ? "{$site}_{$job}" : $job;
}

function job_payload(string $job, array $args): string {
  return json_encode(['func' => $job, 'args' => $args, 'site' => 'http://localhost', 'uid' => 1]);
}

$site = $request['site'] ?? null;
$report = [];
switch ($request['action']) {
  case 'normal':
    $result = $client->doNormal(function_name($site, $request['job']), job_payload($request['job'], $request['args']));
    $report = ['result' => base64_encode((string) $result), 'is_string' => is_string($result), 'return_code' => $client->returnCode()];
    break;
  case 'background':
    $handle = $client->doBackground(function_name($site, $request['job']), job_payload($request['job'], $request['args']));
    $report = ['handle' => $handle, 'return_code' => $client->returnCode()];
    break;
  case 'status':
    $report = ['status' => $client->jobStatus($request['handle']), 'return_code' => $client->returnCode()];
    break;
  case 'batch':
    $completed = [];
    $failed = [];
    $client->setCompleteCallback(function (GearmanTask $task) use (&$completed) {
      $completed[] = base64_encode((string) $task->data());
    });
    $client->setFailCallback(function (GearmanTask $task) use (&$failed) {
      $failed[] = $task->functionName();
    });
    foreach ($request['jobs'] as [$job, $args]) {
      $client->addTask(function_name($site, $job), job_payload($job, $args));
    }
    $ok = $client->runTasks();
    $report = ['ok' => $ok, 'completed' => $completed, 'failed' => $failed, 'return_code' => $client->returnCode()];
    break;
  default:
    fwrite(STDERR, "unknown action {$request['action']}\n");
    exit(2);
}
echo json_encode($report), "\n";
