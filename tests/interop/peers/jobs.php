<?php
// Job functions of a Drupal module, as the original router calls them.
function my_module_hello_world($name) { return "Hello {$name}"; }
function my_module_answer() { return 42; }
function my_module_nothing() { return NULL; }
function my_module_true() { return TRUE; }
function my_module_false() { return FALSE; }
function my_module_float() { return 2.5; }
function my_module_json($value) { return json_encode($value); }
function my_module_fail($message) { throw new Exception($message); }
