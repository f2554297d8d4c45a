<?php

namespace Espo\Custom\Controllers;

/**
 * REST controller for the MissionMAX entity.
 *
 * EspoCRM 8.3 needs a Controller class per custom entity: without this file every
 * /api/v1/MissionMAX call answers 404 "Controller 'MissionMAX' does not exist."
 * After copying or changing it, run: php command.php rebuild (as www-data).
 */
class MissionMAX extends \Espo\Core\Templates\Controllers\Base
{
}
