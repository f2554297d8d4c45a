<?php

namespace Espo\Custom\Controllers;

/**
 * REST controller for the DiagnosticIA entity.
 *
 * EspoCRM 8.3 needs a Controller class per custom entity: without this file every
 * /api/v1/DiagnosticIA call answers 404 "Controller 'DiagnosticIA' does not exist."
 * After copying or changing it, run: php command.php rebuild (as www-data).
 */
class DiagnosticIA extends \Espo\Core\Templates\Controllers\Base
{
}
