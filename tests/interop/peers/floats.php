<?php
// Echo each float of the JSON list on argv[1] on its own line, as PHP's echo prints it.
foreach (json_decode($argv[1]) as $value) {
  if ($value === 'INF') { $value = INF; } elseif ($value === '-INF') { $value = -INF; } elseif ($value === 'NAN') { $value = NAN; }
  echo (float) $value, "\n";
}
